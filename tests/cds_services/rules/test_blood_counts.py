from __future__ import annotations

import dataclasses

import pytest

from cds_services.rules import evaluate
from cds_services.rules.blood_counts import neutrophils_low, platelets_low
from tests.cds_services.rules.conftest import codes, lab, make_facts, only, with_labs
from tests.support import markdown_text


@pytest.mark.parametrize("anc, fires", [(1499, True), (1500, False), (1501, False)])
def test_anc_threshold(kb, anc, fires):
    facts = with_labs(make_facts(), neutrophils=lab("neutrophils", anc))
    findings = list(neutrophils_low(facts, kb))
    assert bool(findings) is fires
    if fires:
        assert findings[0].indicator == "critical"
        assert findings[0].summary.startswith("ANC 1,499/mm3 < 1,500")


@pytest.mark.parametrize("plt, fires", [(99_999, True), (100_000, False), (100_001, False)])
def test_platelet_threshold(kb, plt, fires):
    facts = with_labs(make_facts(), platelets=lab("platelets", plt))
    findings = list(platelets_low(facts, kb))
    assert bool(findings) is fires
    if fires:
        assert findings[0].summary == "Platelets 99,999/mm3 < 100,000 on 2026-11-24: ixabepilone contraindicated"


def test_critical_count_suggests_deleting_the_draft(kb):
    facts = with_labs(make_facts(), platelets=lab("platelets", 80_000))
    finding = only(evaluate(facts, kb), "platelets-low")
    actions = [a for s in finding.suggestions for a in s.actions]
    assert [(a.type, a.resource_id) for a in actions] == [("delete", "MedicationRequest/ixa-1")]
    assert finding.override_reasons


@pytest.mark.parametrize("wbc, fires", [(1499, True), (1500, False)])
def test_wbc_used_only_without_anc(kb, wbc, fires):
    facts = with_labs(make_facts(), neutrophils=None, wbc=lab("wbc", wbc))
    findings = list(neutrophils_low(facts, kb))
    assert bool(findings) is fires
    if fires:
        assert findings[0].summary.startswith("WBC 1,499/mm3")
        assert "WBC < 1,500 means ANC < 1,500" in findings[0].detail


def test_newer_low_wbc_overrides_an_older_normal_anc(kb):
    facts = with_labs(make_facts(), neutrophils=lab("neutrophils", 2500, days=6), wbc=lab("wbc", 1200, days=1))
    assert "WBC 1,200" in only(list(neutrophils_low(facts, kb)), "neutrophils-low").summary


def test_normal_wbc_does_not_hide_a_low_anc(kb):
    facts = with_labs(make_facts(), neutrophils=lab("neutrophils", 900, days=2), wbc=lab("wbc", 4000, days=1))
    assert "ANC 900" in only(list(neutrophils_low(facts, kb)), "neutrophils-low").summary


def test_stale_low_anc_still_fires_with_its_date_and_age(kb):
    facts = with_labs(make_facts(), neutrophils=lab("neutrophils", 1200, days=12))
    finding = only(list(neutrophils_low(facts, kb)), "neutrophils-low")
    assert "2026-11-13" in finding.summary
    assert "12 days old, older than the 7-day window" in finding.detail


def test_unusable_anc_is_not_read_as_low_or_normal(kb):
    facts = with_labs(make_facts(), neutrophils=lab("neutrophils", None, problem="unit 10*3/uL: 3000 is implausible"))
    findings = evaluate(facts, kb)
    assert "neutrophils-low" not in [f.rule for f in findings]
    assert "ANC unusable" in only(findings, "check-unavailable").summary
    assert "ANC" in only(findings, "labs-missing").summary


@pytest.mark.parametrize("temp, hours, febrile", [(38.0, 3, True), (37.9, 3, False), (38.5, 25, False)])
def test_fever_in_last_24_h_is_named_febrile_neutropenia(kb, temp, hours, febrile):
    facts = with_labs(
        make_facts(),
        neutrophils=lab("neutrophils", 800),
        temperature=lab("temperature", temp, days=hours / 24),
    )
    finding = only(list(neutrophils_low(facts, kb)), "neutrophils-low")
    assert ("febrile neutropenia" in finding.summary) is febrile


def test_a_newer_preliminary_fever_counts_over_an_older_final_normal_temperature(kb):
    """[S] fever: >= 38.0 °C in the last 24 h; a newer preliminary result that crosses it is the one judged."""
    final = lab("temperature", 37.0, days=10 / 24)
    preliminary = dataclasses.replace(lab("temperature", 38.0, days=2 / 24), status="preliminary")
    facts = dataclasses.replace(with_labs(make_facts(), neutrophils=lab("neutrophils", 800), temperature=final),
                                preliminary_labs={"temperature": preliminary})
    assert "febrile neutropenia" in only(list(neutrophils_low(facts, kb)), "neutrophils-low").summary


@pytest.mark.parametrize(("analyte", "name", "bound", "threshold"), [
    ("platelets", "Platelets", 50_000, "platelets < 100,000 cells/mm3"),  # label §4: platelets < 100,000
    ("neutrophils", "ANC", 1_000, "ANC < 1,500 cells/mm3"),  # label §4: ANC < 1,500
])
def test_a_count_reported_only_as_a_bound_below_the_threshold_is_not_graded(kb, analyte, name, bound, threshold):
    """">50,000" platelets may be 60,000 or 200,000: neither safe nor contraindicated, and said so."""
    reported = dataclasses.replace(lab(analyte, bound), comparator=">")
    findings = evaluate(with_labs(make_facts(), **{analyte: reported}), kb)
    assert "platelets-low" not in codes(findings) and "neutrophils-low" not in codes(findings)
    card = only(findings, "check-unavailable")
    assert card.summary == f"Could not check: {name} >{bound:,} not graded"
    assert markdown_text(card.detail).startswith("These checks could not run")
    assert f"**{name} >{bound:,} not graded**: {name} >{bound:,} cells/mm3 on 2026-11-24" in markdown_text(card.detail)
    assert f"does not settle the threshold {threshold}" in card.detail
    assert "a measured value is needed" in card.detail


def test_the_febrile_neutropenia_card_quotes_the_label_on_cycles_and_dose(kb):
    """Label §4, §2.2: no course or cycle unless ANC >= 1,500 and platelets >= 100,000 cells/mm3; after febrile
    neutropenia reduce the next dose by 20%. Fever >= 38.0 °C within 24 h [S] (ixabepilone.md, Fever)."""
    facts = with_labs(make_facts(), neutrophils=lab("neutrophils", 900), temperature=lab("temperature", 38.4, days=0.2))
    finding = only(list(neutrophils_low(facts, kb)), "neutrophils-low")
    assert finding.summary == "ANC 900/mm3 < 1,500 with fever 38.4 °C: febrile neutropenia, ixabepilone contraindicated"
    assert finding.detail.splitlines() == [
        "- **ANC 900 cells/mm3 on 2026-11-24 (1 d ago, Observation/neutrophils-1)**; threshold < 1,500 cells/mm3 "
        "[L §4 Contraindications; §2.2].",
        "- **Fever**: Temperature 38.4 Cel on 2026-11-25 (today, Observation/temperature-1) (≥ 38.0 °C within 24 h "
        "[S Fever]): treat as febrile neutropenia; after febrile neutropenia the label reduces the next dose by 20% "
        "[L §2.2].",
        "",
        "**Label:** do not begin a course, or any new cycle, unless ANC ≥ 1,500 cells/mm3 and platelets ≥ 100,000 "
        "cells/mm3 [L §4; §2.2].",
        "",
        "**What to do:** hold the ixabepilone order and repeat the CBC; treat only once ANC ≥ 1,500 cells/mm3.",
    ]
    assert [(a.type, a.resource_id) for s in finding.suggestions for a in s.actions] == [("delete", "MedicationRequest/ixa-1")]


def test_the_platelet_card_quotes_the_later_cycle_reduction(kb):
    """Label §2.2: platelets < 25,000/mm3 (or < 50,000 with bleeding): reduce by 20% in later cycles."""
    finding = only(list(platelets_low(with_labs(make_facts(), platelets=lab("platelets", 80_000)), kb)), "platelets-low")
    assert finding.detail.splitlines() == [
        "- **Platelets 80,000 cells/mm3 on 2026-11-24 (1 d ago, Observation/platelets-1)**; threshold < 100,000 "
        "cells/mm3 [L §4 Contraindications; §2.2].",
        "",
        "**Label:** do not begin a course, or any new cycle, unless ANC ≥ 1,500 cells/mm3 and platelets ≥ 100,000 "
        "cells/mm3 [L §4; §2.2].",
        "",
        "**What to do:** hold the ixabepilone order and repeat the CBC; platelets < 25,000/mm3 (or < 50,000 with "
        "bleeding) call for a 20% dose reduction in later cycles [L §2.2].",
    ]


def test_a_bound_below_the_threshold_settles_it_and_the_summary_keeps_the_bound(kb):
    """"<1,000" ANC is below label §4's 1,500 whatever the value: contraindicated, shown as the lab reported it."""
    reported = dataclasses.replace(lab("neutrophils", 1_000), comparator="<", status="preliminary")
    facts = dataclasses.replace(make_facts(), labs={k: v for k, v in make_facts().labs.items() if k != "neutrophils"},
                                preliminary_labs={"neutrophils": reported})
    finding = only(list(neutrophils_low(facts, kb)), "neutrophils-low")
    assert finding.summary.startswith("ANC (preliminary) <1,000/mm3, below 1,500")
    plain = only(list(platelets_low(with_labs(make_facts(), platelets=lab("platelets", 80_000)), kb)), "platelets-low")
    assert plain.summary.startswith("Platelets 80,000/mm3 < 100,000")
