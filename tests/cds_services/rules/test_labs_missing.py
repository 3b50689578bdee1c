from __future__ import annotations

import pytest

from cds_services.rules.labs_missing import labs_missing
from tests.cds_services.rules.conftest import lab, make_facts, only, with_labs


@pytest.mark.parametrize(
    "analyte, value, window",
    [("neutrophils", 3000, 7), ("platelets", 200_000, 7), ("ast", 30, 14), ("alt", 30, 14), ("bilirubin", 0.8, 14)],
)
def test_freshness_window_boundary(kb, analyte, value, window):
    at = with_labs(make_facts(), **{analyte: lab(analyte, value, days=window)})
    assert list(labs_missing(at, kb)) == []
    after = with_labs(make_facts(), **{analyte: lab(analyte, value, days=window + 0.5)})
    finding = only(list(labs_missing(after, kb)), "labs-missing")
    assert f"{window} d old" in finding.summary
    assert finding.indicator == "warning"


def test_missing_and_unusable_and_old_are_named(kb):
    facts = with_labs(
        make_facts(),
        neutrophils=None,
        wbc=None,
        platelets=lab("platelets", None, problem="unknown unit 'giga/L'"),
        bilirubin=lab("bilirubin", 0.8, days=30),
    )
    finding = only(list(labs_missing(facts, kb)), "labs-missing")
    assert "ANC (none)" in finding.summary
    assert "Platelets (unusable)" in finding.summary
    assert "Bilirubin (30 d old)" in finding.summary
    assert "unknown unit 'giga/L'" in finding.detail


def test_normal_wbc_does_not_stand_in_for_anc(kb):
    facts = with_labs(make_facts(), neutrophils=None, wbc=lab("wbc", 5000))
    finding = only(list(labs_missing(facts, kb)), "labs-missing")
    assert "ANC (none)" in finding.summary
    assert "cannot show ANC" in finding.detail


def test_fresh_low_wbc_already_proves_anc_low(kb):
    facts = with_labs(make_facts(), neutrophils=None, wbc=lab("wbc", 1000))
    assert list(labs_missing(facts, kb)) == []


def test_the_card_lists_each_test_and_quotes_the_labels_conditions_for_a_cycle(kb):
    """Label §2.2: no cycle unless ANC >= 1,500 and platelets >= 100,000 cells/mm3; §2.4: the dose depends on
    AST, ALT and bilirubin. A normal WBC only bounds the ANC from above."""
    facts = with_labs(make_facts(), neutrophils=None, wbc=lab("wbc", 5000, days=2))
    lines = only(list(labs_missing(facts, kb)), "labs-missing").detail.splitlines()
    assert lines[1] == ("- A WBC of 5,000 cells/mm3 (2026-11-23) bounds the ANC only from above: it cannot show "
                        "ANC ≥ 1,500.")
    assert lines[2:] == [
        "",
        "**Label:** do not begin a cycle unless ANC ≥ 1,500 cells/mm3 and platelets ≥ 100,000 cells/mm3 [L §2.2]; "
        "the monotherapy dose depends on AST, ALT and bilirubin [L §2.4].",
        "The freshness windows are project settings: an old result is not taken as today's.",
        "",
        "**What to do:** order a CBC with differential and liver tests (AST, ALT, total bilirubin) as listed.",
    ]


def test_no_card_when_the_labs_could_not_be_read_at_all(kb):
    """Then check-unavailable says so: "none on record" would be untrue."""
    import dataclasses

    facts = dataclasses.replace(make_facts(), labs={}, unavailable={"labs": "FHIR server error (500)"})
    assert list(labs_missing(facts, kb)) == []


def test_each_test_not_current_is_named_with_why_and_its_window(kb):
    """Freshness windows (project settings, ixabepilone.md Lab freshness): 7 days for the CBC, 14 for liver tests."""
    import dataclasses

    facts = with_labs(make_facts(), neutrophils=None, wbc=None,
                      platelets=lab("platelets", None, problem="unknown unit 'giga/L'"),
                      ast=dataclasses.replace(lab("ast", 30), effective=None), bilirubin=lab("bilirubin", 0.8, days=30))
    finding = only(list(labs_missing(facts, kb)), "labs-missing")
    assert finding.summary == ("No current ANC (none), Platelets (unusable), AST (undated), Bilirubin (30 d old): "
                               "check before dosing")
    lines = finding.detail.splitlines()
    assert lines[0].startswith("- ANC: no result on record (window 7 d ")
    assert lines[1].startswith("- Platelets: latest result cannot be used: unknown unit 'giga/L' (window 7 d ")
    assert lines[2].startswith("- AST: latest result 30 U/L has no date (window 14 d ")
    assert lines[3].startswith("- Bilirubin: latest 0.8 mg/dL on 2026-10-26, 30 days old (window 14 d ")
