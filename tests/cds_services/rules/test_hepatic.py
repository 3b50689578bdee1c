from __future__ import annotations

import dataclasses

import pytest

from cds_services.rules import evaluate
from cds_services.rules.hepatic import hepatic_combination, hepatic_impairment_condition, hepatic_monotherapy
from tests.cds_services.rules.conftest import add_drafts, add_meds, drug, evidence, lab, make_facts, only, with_labs

ULN_AST = 40.0
ULN_BILI = 1.2


def capecitabine_facts(**labs):
    return with_labs(add_meds(make_facts(), drug("capecitabine", display="capecitabine 500 MG Oral Tablet")), **labs)


@pytest.mark.parametrize("ast, fires", [(99.6, False), (100.0, False), (100.4, True)])  # 2.5 x ULN = 100
def test_combination_transaminase_boundary(kb, ast, fires):
    facts = capecitabine_facts(ast=lab("ast", ast))
    findings = list(hepatic_combination(facts, kb))
    assert bool(findings) is fires
    if fires:
        assert findings[0].indicator == "critical"
        assert "with capecitabine" in findings[0].summary


@pytest.mark.parametrize("bili, fires", [(1.1, False), (1.2, False), (1.3, True)])  # 1 x ULN = 1.2
def test_combination_bilirubin_boundary(kb, bili, fires):
    facts = capecitabine_facts(bilirubin=lab("bilirubin", bili))
    assert bool(list(hepatic_combination(facts, kb))) is fires


def test_combination_with_draft_capecitabine_and_no_monotherapy_card(kb):
    facts = with_labs(add_drafts(make_facts(), drug("capecitabine", origin="draft")), alt=lab("alt", 150))
    findings = evaluate(facts, kb)
    assert only(findings, "hepatic-combination").indicator == "critical"
    assert "hepatic-monotherapy" not in [f.rule for f in findings]


@pytest.mark.parametrize(
    "ast, bili, expected",
    [
        (100, 1.2, None),  # 2.5 x ULN, 1.0 x ULN: no reduction
        (101, 1.2, 32),  # just above 2.5 x
        (100, 1.3, 32),  # bilirubin just above 1 x
        (100, 1.8, 32),  # bilirubin exactly 1.5 x ULN
        (100, 1.81, 20),  # just above 1.5 x
        (100, 3.6, 20),  # exactly 3 x ULN
        (400, 1.0, 32),  # AST exactly 10 x ULN
        (401, 1.0, "critical"),  # just above 10 x
        (100, 3.61, "critical"),  # bilirubin just above 3 x
    ],
)
def test_monotherapy_bands(kb, ast, bili, expected):
    facts = with_labs(make_facts(), ast=lab("ast", ast), bilirubin=lab("bilirubin", bili))
    findings = list(hepatic_monotherapy(facts, kb))
    if expected is None:
        assert findings == []
    elif expected == "critical":
        assert findings[0].indicator == "critical"
        assert "not recommended" in findings[0].summary
    else:
        assert findings[0].indicator == "warning"
        assert f"reduce ixabepilone to {expected} mg/m2" in findings[0].summary


def test_monotherapy_update_suggestion_changes_dose_quantity(kb):
    facts = with_labs(make_facts(), ast=lab("ast", 150))
    finding = only(list(hepatic_monotherapy(facts, kb)), "hepatic-monotherapy")
    (action,) = finding.suggestions[0].actions
    assert action.type == "update"
    quantity = action.resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    assert quantity == {"value": 32, "unit": "mg/m2", "system": "http://unitsofmeasure.org", "code": "mg/m2"}
    assert action.resource["id"] == "ixa-1"
    # the facts' own order JSON is untouched
    assert facts.orders[0].resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 40


def test_no_update_suggestion_without_order_json(kb):
    from tests.cds_services.rules.conftest import ixabepilone_order

    order = ixabepilone_order(resource=False)
    facts = with_labs(make_facts(orders=(order,), draft_orders=(order,)), ast=lab("ast", 150))
    finding = only(list(hepatic_monotherapy(facts, kb)), "hepatic-monotherapy")
    assert finding.suggestions == ()


def test_gilbert_excludes_bilirubin_and_says_so(kb):
    facts = with_labs(make_facts(gilbert_syndrome=(evidence("Gilbert's syndrome"),)), bilirubin=lab("bilirubin", 3.0))
    assert list(hepatic_monotherapy(facts, kb)) == []
    facts = with_labs(facts, ast=lab("ast", 150))
    finding = only(list(hepatic_monotherapy(facts, kb)), "hepatic-monotherapy")
    assert "32 mg/m2" in finding.summary
    assert "Gilbert's syndrome is recorded: bilirubin is excluded" in finding.detail


def test_default_uln_is_said_on_the_card(kb):
    facts = with_labs(make_facts(), ast=lab("ast", 150, uln_defaulted=True))
    finding = only(list(hepatic_monotherapy(facts, kb)), "hepatic-monotherapy")
    assert "**default**" in finding.detail


def test_missing_uln_falls_back_to_the_knowledge_default(kb):
    raw = dataclasses.replace(lab("ast", 150), uln=None)
    facts = with_labs(make_facts(), ast=raw)
    finding = only(list(hepatic_monotherapy(facts, kb)), "hepatic-monotherapy")
    assert "3.75 x ULN" in finding.detail and "**default**" in finding.detail


def test_lab_reference_range_is_used_when_given(kb):
    facts = with_labs(make_facts(), ast=lab("ast", 150, uln=60))  # 2.5 x ULN: no reduction
    assert list(hepatic_monotherapy(facts, kb)) == []


def test_stale_raised_value_still_fires_and_is_marked_old(kb):
    facts = with_labs(make_facts(), ast=lab("ast", 150, days=20))
    finding = only(list(hepatic_monotherapy(facts, kb)), "hepatic-monotherapy")
    assert "old result 2026-11-05" in finding.summary


def test_strong_inhibitor_with_hepatic_band_suggests_the_lower_dose(kb):
    facts = with_labs(add_meds(make_facts(), drug("ketoconazole")), ast=lab("ast", 150))
    finding = only(list(hepatic_monotherapy(facts, kb)), "hepatic-monotherapy")
    quantity = finding.suggestions[0].actions[0].resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    assert quantity["value"] == 20


def test_liver_disease_without_fresh_liver_tests(kb):
    facts = with_labs(
        make_facts(liver_disease=(evidence("Cirrhosis of liver (SNOMED 19943007)"),)),
        ast=lab("ast", 30, days=20),
        alt=None,
    )
    finding = only(list(hepatic_impairment_condition(facts, kb)), "hepatic-impairment-condition")
    assert finding.indicator == "warning"
    assert "AST, ALT" in finding.summary
    assert "ALT: none on record" in finding.detail


def test_liver_disease_with_fresh_tests_is_graded_not_flagged(kb):
    facts = make_facts(liver_disease=(evidence("Cirrhosis of liver"),))
    assert list(hepatic_impairment_condition(facts, kb)) == []


@pytest.mark.parametrize(("combination", "settles"), [
    (False, "the monotherapy dose table [L §2.4]"),  # > 2.5 x ULN: 32 mg/m2, 20 mg/m2 or not recommended
    (True, "the capecitabine contraindication (AST/ALT > 2.5 x ULN"),  # boxed warning
])
def test_an_ast_reported_only_as_a_bound_that_does_not_settle_the_table_is_not_graded(kb, combination, settles):
    """AST ">80" U/L with ULN 40 is above 2 x ULN: it may be 90 (within 2.5 x ULN) or 500; the label's table
    cannot be read from it, and the card says so rather than grading a guess."""
    reported = dataclasses.replace(lab("ast", 80.0 if combination else 101.0), comparator=">")
    facts = capecitabine_facts(ast=reported) if combination else with_labs(make_facts(), ast=reported)
    findings = evaluate(facts, kb)
    assert "hepatic-monotherapy" not in [f.rule for f in findings]
    assert "hepatic-combination" not in [f.rule for f in findings]
    card = only(findings, "check-unavailable")
    assert "AST" in card.summary and "x ULN not graded" in card.summary
    assert f"does not settle {settles}" in card.detail
    assert "AST >" in card.detail and "a measured value is needed" in card.detail


def test_liver_disease_without_current_liver_tests_lists_each_missing_one_and_why(kb):
    """Label §2.4: the monotherapy dose depends on AST, ALT and bilirubin; a recorded liver disease without a
    current panel (project window 14 days) is a warning that names each test: old, unusable or absent."""
    facts = with_labs(make_facts(liver_disease=(evidence("Cirrhosis of liver", days=200),)),
                      ast=lab("ast", 35.0, days=20), alt=lab("alt", None, problem="no value"), bilirubin=None)
    finding = only(list(hepatic_impairment_condition(facts, kb)), "hepatic-impairment-condition")
    assert finding.summary == "Cirrhosis of liver on record, no current AST, ALT, Bilirubin: dose cannot be graded"
    lines = finding.detail.splitlines()
    assert lines[0] == "- Cirrhosis of liver, 2026-05-09, Condition/c-1"
    assert lines[1].startswith("- AST: latest AST 35 U/L on 2026-11-05") and lines[1].endswith(
        ", outside the 14-day window")
    assert lines[2:4] == ["- ALT: latest result unusable (no value)", "- Bilirubin: none on record"]
    assert lines[5] == ("**Label:** the monotherapy dose depends on AST, ALT and bilirubin (40, 32 or 20 mg/m2, or not "
                        "recommended) [L §2.4]; with capecitabine, raised values are a contraindication [L §4].")
    assert lines[7].startswith("**What to do:** order AST, ALT and total bilirubin and review them before dosing "
                               "(window 14 d ")
    undated = make_facts(liver_disease=(evidence("Hepatitis C", days=None),))
    undated = with_labs(undated, ast=None)
    assert only(list(hepatic_impairment_condition(undated, kb)), "hepatic-impairment-condition").detail.startswith(
        "- Hepatitis C, Condition/c-1\n- AST: none on record\n")


def test_liver_disease_is_not_flagged_when_no_lab_data_could_be_had(kb):
    """Without the labs at all, "no current AST" would be untrue: the check-unavailable card says it instead."""
    facts = dataclasses.replace(make_facts(liver_disease=(evidence("Cirrhosis of liver"),)),
                                labs={}, unavailable={"labs": "FHIR server error (500)"})
    assert list(hepatic_impairment_condition(facts, kb)) == []


def test_the_boxed_warning_card_shows_each_value_as_a_multiple_of_its_uln(kb):
    """Boxed warning, §4, §5.3: with capecitabine, contraindicated when AST or ALT > 2.5 x ULN or bilirubin
    > 1 x ULN. AST 120 U/L with ULN 40 is 3 x ULN; bilirubin 1.5 mg/dL with ULN 1.2 is 1.25 x ULN."""
    facts = capecitabine_facts(ast=lab("ast", 120.0), bilirubin=lab("bilirubin", 1.5))
    finding = only(list(hepatic_combination(facts, kb)), "hepatic-combination")
    assert finding.summary == ("AST 3 x ULN, Bilirubin 1.25 x ULN with capecitabine: ixabepilone contraindicated "
                               "(boxed warning)")
    assert finding.detail.splitlines() == [
        "- AST 120 U/L on 2026-11-24 (1 d ago, Observation/ast-1; recorded as 120.0 U/L): **3 x ULN**; "
        "ULN 40 U/L (lab reference range)",
        "- Bilirubin 1.5 mg/dL on 2026-11-24 (1 d ago, Observation/bilirubin-1): **1.25 x ULN**; "
        "ULN 1.2 mg/dL (lab reference range)",
        "- Capecitabine: **capecitabine 500 MG Oral Tablet**, active order (active), 2026-11-15, "
        "MedicationRequest/capecitabine-request",
        "",
        "**Label (boxed warning):** with capecitabine, IXEMPRA is contraindicated when AST or ALT > 2.5 x ULN or "
        "bilirubin > 1 x ULN: higher risk of toxicity and neutropenia-related death [L Boxed warning; §4; §5.3].",
        "",
        "**What to do:** do not give the combination; review liver tests and the regimen.",
    ]
    assert [(a.type, a.resource_id) for s in finding.suggestions for a in s.actions] == [("delete", "MedicationRequest/ixa-1")]


def test_the_dose_band_card_says_how_old_each_value_is_where_its_uln_came_from_and_what_gilbert_excludes(kb):
    """Label §2.4 table: AST 200 U/L with ULN 40 is 5 x ULN, within 10 x ULN: 32 mg/m2 (bilirubin 2 x ULN is not
    counted with Gilbert's syndrome). The AST is 20 days old (project window 14 d) and the bilirubin's ULN is the
    documented default: the card says both."""
    facts = with_labs(make_facts(gilbert_syndrome=(evidence("Gilbert syndrome"),)),
                      ast=lab("ast", 200.0, days=20), bilirubin=lab("bilirubin", 2.4, uln_defaulted=True))
    finding = only(list(hepatic_monotherapy(facts, kb)), "hepatic-monotherapy")
    assert finding.summary == "AST 5 x ULN (old result 2026-11-05): reduce ixabepilone to 32 mg/m2 (hepatic table)"
    lines = finding.detail.splitlines()
    assert lines[0] == ("- AST 200 U/L on 2026-11-05 (20 d ago, Observation/ast-1; recorded as 200.0 U/L): **5 x ULN**; "
                        "ULN 40 U/L (lab reference range); it is 20 days old, older than the 14-day window "
                        "[project setting]: repeat before dosing")
    assert lines[2] == ("- Bilirubin 2.4 mg/dL on 2026-11-24 (1 d ago, Observation/bilirubin-1): **2 x ULN**; "
                        "ULN 1.2 mg/dL (**default**: the lab gave no reference range [project setting]); "
                        "not counted (Gilbert's syndrome)")
    assert lines[3] == "- Gilbert's syndrome is recorded: bilirubin is excluded from the table's criteria [L §2.4]."
    assert lines[-1] == "**What to do:** give 32 mg/m2 [L §2.4 Table (monotherapy)]."
    undated = with_labs(make_facts(), ast=dataclasses.replace(lab("ast", 200.0), effective=None))
    assert "(undated result)" in only(list(hepatic_monotherapy(undated, kb)), "hepatic-monotherapy").summary


TABLE_LINE = ("**Label table (monotherapy, first course) [L §2.4]:** AST and ALT ≤ 2.5 x ULN and bilirubin ≤ 1 x ULN: "
              "40 mg/m2; AST and ALT ≤ 10 x ULN and bilirubin ≤ 1.5 x ULN: 32 mg/m2; AST and ALT ≤ 10 x ULN and bilirubin "
              "> 1.5 to ≤ 3 x ULN: 20 mg/m2, up to 30 mg/m2 if tolerated; AST or ALT > 10 x ULN or bilirubin > 3 x ULN: "
              "not recommended.")


@pytest.mark.parametrize(("labs", "indicator", "summary", "what", "action"), [
    ({"bilirubin": 2.4}, "warning", "Bilirubin 2 x ULN: reduce ixabepilone to 20 mg/m2 (hepatic table)",
     "**What to do:** give 20 mg/m2 to start, up to 30 mg/m2 in later cycles if tolerated [L §2.4 Table (monotherapy)].",
     ("update", "Change ixabepilone 45 MG Injection to 20 mg/m2 (hepatic impairment, label §2.4)")),
    ({"alt": 90.0, "bilirubin": 1.5}, "warning", "Bilirubin 1.25 x ULN: reduce ixabepilone to 32 mg/m2 (hepatic table)",
     "**What to do:** give 32 mg/m2 [L §2.4 Table (monotherapy)].",
     ("update", "Change ixabepilone 45 MG Injection to 32 mg/m2 (hepatic impairment, label §2.4)")),
    ({"ast": 500.0}, "critical", "AST 12.5 x ULN: ixabepilone not recommended (hepatic impairment)",
     "**What to do:** do not give ixabepilone; review liver function.",
     ("delete", "Remove the draft order ixabepilone 45 MG Injection")),
])
def test_each_row_of_the_monotherapy_table_gives_its_card(kb, labs, indicator, summary, what, action):
    """Label §2.4 table with ULN 40 U/L and 1.2 mg/dL: bilirubin 2 x ULN -> 20 mg/m2; ALT 2.25 x and bilirubin
    1.25 x ULN -> 32 mg/m2 (only the bilirubin is above the first row); AST 12.5 x ULN -> not recommended."""
    facts = with_labs(make_facts(), **{k: lab(k, v) for k, v in labs.items()})
    finding = only(list(hepatic_monotherapy(facts, kb)), "hepatic-monotherapy")
    assert (finding.indicator, finding.summary) == (indicator, summary)
    lines = finding.detail.splitlines()
    assert lines[-4:] == ["", TABLE_LINE, "", what]
    assert [(a.type, a.description) for s in finding.suggestions for a in s.actions] == [action]


def test_the_summary_names_an_alt_above_the_first_row(kb):
    """Label §2.4: AST and ALT count alike; ALT 200 U/L with ULN 40 (5 x ULN) -> 32 mg/m2, named in the summary."""
    finding = only(list(hepatic_monotherapy(with_labs(make_facts(), alt=lab("alt", 200.0)), kb)), "hepatic-monotherapy")
    assert finding.summary == "ALT 5 x ULN: reduce ixabepilone to 32 mg/m2 (hepatic table)"
