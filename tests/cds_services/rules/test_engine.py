from __future__ import annotations

import dataclasses
import logging
from collections import Counter

import pytest

from cds_services import rules
from cds_services.rules import evaluate
from cds_services.rules.common import Rule
from fhir_mappings.facts import Dose
from tests.cds_services.rules.conftest import (
    add_meds,
    ago,
    allergy,
    drug,
    evidence,
    ixabepilone_order,
    lab,
    make_facts,
    only,
    with_labs,
)
from tests.support import markdown_text


def messy_facts():
    """A patient who triggers every rule at once."""
    order = ixabepilone_order(mg=400)
    facts = make_facts(
        orders=(order,),
        draft_orders=(order, drug("dexamethasone", origin="draft"), drug("clarithromycin", origin="draft")),
        medications=(drug("carbamazepine"), drug("fluconazole"), drug("capecitabine")),
        allergies=(allergy("cremophor"), allergy("paclitaxel")),
        pregnancy=(evidence("Pregnancy"),),
        breastfeeding=(evidence("Breastfeeding"),),
        liver_disease=(evidence("Chronic liver disease"),),
        radiotherapy=(evidence("Radiotherapy", days=20),),
        live_vaccines=(evidence("Yellow fever vaccine", days=3, code="37"),),
        diabetes=(evidence("Diabetes mellitus"),),
        neuropathy=(evidence("Peripheral nerve disease"),),
        problems=("Observation/obs-7: unknown element 'foo'",),
    )
    return with_labs(
        facts,
        neutrophils=lab("neutrophils", 900, days=10),
        platelets=lab("platelets", 50_000),
        ast=lab("ast", 500, days=20),
        bilirubin=lab("bilirubin", 5.0, uln_defaulted=True),
        alt=None,
        temperature=lab("temperature", 38.6, days=0.2),
        wbc=lab("wbc", None, problem="unit 'giga/L' not recognised"),
    )


def test_clean_patient_has_no_warning_or_critical_card(kb, facts):
    assert [f for f in evaluate(facts, kb) if f.indicator != "info"] == []
    assert evaluate(facts, kb) == []


def test_no_ixabepilone_order_nothing_to_check(kb):
    facts = dataclasses.replace(messy_facts(), orders=())
    assert evaluate(facts, kb) == []


def test_several_findings_each_card_once_sorted(kb):
    findings = evaluate(messy_facts(), kb)
    counts = Counter(f.rule for f in findings)
    assert all(n == 1 for n in counts.values()), counts
    expected = {
        "neutrophils-low", "platelets-low", "hepatic-combination", "hepatic-impairment-condition",
        "hypersensitivity", "pregnancy", "breastfeeding", "cyp3a4-strong-inhibitor", "cyp3a4-strong-inducer",
        "cyp3a4-other", "labs-missing", "dose-check", "radiation-recall", "live-vaccine", "neuropathy-risk",
        "premedication-missing", "check-unavailable",
    }
    assert set(counts) == expected
    order = {"critical": 0, "warning": 1, "info": 2}
    ranks = [order[f.indicator] for f in findings]
    assert ranks == sorted(ranks)


def test_every_summary_is_under_140_characters(kb):
    variants = [messy_facts(), dataclasses.replace(messy_facts(), medications=())]
    many = add_meds(make_facts(), *(drug(d) for d in ("ketoconazole", "itraconazole", "voriconazole", "posaconazole",
                                                      "clarithromycin", "telithromycin", "rifampin", "rifabutin",
                                                      "phenobarbital", "erythromycin", "diltiazem", "verapamil")))
    variants.append(many)
    variants.append(make_facts(allergies=tuple(allergy(s) for s in ("castor-oil", "paclitaxel", "cyclosporine", "teniposide"))))
    variants.append(with_labs(make_facts(), ast=lab("ast", 1234.5), alt=lab("alt", 2345.5), bilirubin=lab("bilirubin", 12.3)))
    seen = set()
    for facts in variants:
        for finding in evaluate(facts, kb):
            seen.add(finding.rule)
            assert len(finding.summary) < 140, finding.summary
            assert finding.source in kb.sources
            assert finding.indicator in ("info", "warning", "critical")
            if finding.indicator != "info":
                assert finding.override_reasons
    assert "hepatic-monotherapy" in seen and "cyp3a4-strong-inhibitor" in seen


def test_a_rule_that_raises_becomes_check_unavailable(kb, monkeypatch, caplog):
    def body(facts, kb):
        raise ZeroDivisionError("boom")

    broken = Rule("platelets-low", body)
    monkeypatch.setattr(rules, "RULES", [broken, *rules.RULES[1:]])
    facts = with_labs(make_facts(), neutrophils=lab("neutrophils", 800))
    with caplog.at_level(logging.ERROR, logger="cds_services.rules"):
        findings = evaluate(facts, kb)
    card = only(findings, "check-unavailable")
    assert "platelets-low check failed" in card.summary
    assert "ZeroDivisionError" in card.detail
    assert "neutrophils-low" not in [f.rule for f in findings]  # replaced by the broken rule
    assert any("platelets-low" in r.getMessage() for r in caplog.records)


def test_other_rules_still_answer_when_one_raises(kb, monkeypatch):
    def broken(facts, kb):
        raise KeyError("x")

    monkeypatch.setattr(rules, "RULES", [broken, *rules.RULES])
    facts = with_labs(make_facts(), platelets=lab("platelets", 50_000))
    codes = [f.rule for f in evaluate(facts, kb)]
    assert "platelets-low" in codes and "check-unavailable" in codes


def test_all_unavailable_items_merge_into_one_card(kb, monkeypatch):
    def broken(facts, kb):
        raise RuntimeError("x")

    monkeypatch.setattr(rules, "RULES", [broken, *rules.RULES])
    facts = with_labs(
        make_facts(problems=("Condition/c-9: invalid code",)),
        temperature=lab("temperature", None, problem="unit '[degF]' with value 500 is implausible"),
    )
    card = only(evaluate(facts, kb), "check-unavailable")
    assert card.indicator == "info"
    for text in ("broken check failed", "Temperature unusable", "Condition/c-9: invalid code"):
        assert text in markdown_text(card.detail)


def test_dose_problem_is_a_dose_card_not_silence(kb):
    order = ixabepilone_order(dose=Dose(raw="", problem="no doseQuantity"))
    facts = make_facts(orders=(order,), draft_orders=(order, *make_facts().draft_orders[1:]))
    assert only(evaluate(facts, kb), "dose-check").indicator == "warning"


def test_every_kind_of_record_data_names_the_checks_that_need_it():
    from cds_services.rules import CHECKS_BY_DATA, RULES
    from fhir_mappings.facts import DATA_KINDS

    assert tuple(CHECKS_BY_DATA) == DATA_KINDS
    codes = {rule.code for rule in RULES}
    assert all(set(checks) <= codes for checks in CHECKS_BY_DATA.values())


def test_an_unreadable_ixabepilone_order_is_one_info_card_that_says_no_check_ran(kb):
    """No check could run, and silence would read as "safe": one check-unavailable card, every problem on it."""
    (card,) = rules.unreadable_order(["MedicationRequest/ixa-1: dose <b>unreadable</b>", "MedicationRequest/ixa-2: no drug"], kb)
    assert (card.rule, card.indicator) == ("check-unavailable", "info")
    assert card.summary == "Could not check: ixabepilone order unreadable"
    assert "**No card does not mean safe**" in card.detail
    assert "MedicationRequest/ixa-2: no drug" in markdown_text(card.detail)
    assert "<b>" not in card.detail  # request text is escaped in the card's Markdown (GFM, CDS Hooks 2.0)
    assert rules.unreadable_order([], kb) == []


def test_a_medication_line_names_where_it_is_recorded_and_its_status(kb):
    """What a clinician needs to find the entry: the drug, which list it is on and its status, date and id."""
    from cds_services.rules.common import use_line

    def line(origin, status):
        return use_line(dataclasses.replace(drug("ketoconazole", origin=origin), status=status))

    assert line("draft", "draft") == "**ketoconazole**, draft order, 2026-11-15, MedicationRequest/ketoconazole-draft"
    assert line("request", "active") == (
        "**ketoconazole**, active order (active), 2026-11-15, MedicationRequest/ketoconazole-request")
    assert line("request", "on-hold").startswith("**ketoconazole**, active order (on-hold), ")
    assert line("request", "stopped").startswith("**ketoconazole**, order (stopped), ")
    assert line("request", "completed").startswith("**ketoconazole**, order (completed), ")
    assert line("statement", "active").startswith("**ketoconazole**, medication statement (active), ")
    assert line("statement", None).startswith("**ketoconazole**, medication statement, ")
    assert use_line(drug("ketoconazole"), "strong CYP3A4 inhibitor").endswith(
        "MedicationRequest/ketoconazole-request: strong CYP3A4 inhibitor")


def test_data_the_checks_could_not_use_is_listed_item_by_item_on_one_card(kb):
    """A kind of record data that could not be had, an unusable latest result, an unusable newer result and a
    resource not fully read: each is a line, and the card says that no card does not mean safe."""
    newer = lab("platelets", None, days=0.5, problem="no value (specimen clotted)")
    facts = with_labs(
        dataclasses.replace(make_facts(), unavailable={"allergies": "FHIR server error (500)"},
                            problems=("Observation/x: unknown element 'foo'",)),
        neutrophils=lab("neutrophils", None, problem="unit 10*3/uL: 3000 is implausible"),
        platelets=dataclasses.replace(lab("platelets", 150_000, days=2), newer_unusable=newer),
    )
    card = only(evaluate(facts, kb), "check-unavailable")
    assert card.summary == ("Could not check: allergies not read; ANC unusable; newest Platelets unusable; "
                            "record not fully read")
    assert markdown_text(card.detail).splitlines()[2:] == [
        "- **allergies not read**: prefetch.allergies could not be had (FHIR server error (500)); "
        "checks that went without it: Hypersensitivity to Cremophor EL or ixabepilone.",
        "- **ANC unusable**: latest ANC (Observation/neutrophils-1) recorded as '3000 10*3/uL': "
        "unit 10*3/uL: 3000 is implausible",
        "- **newest Platelets unusable**: the newest Platelets (Observation/platelets-1) of 2026-11-25 could not be "
        "used (no value (specimen clotted)); the checks used the one of 2026-11-23 (Observation/platelets-1).",
        "- **record not fully read**: Observation/x: unknown element 'foo'",
    ]


def test_for_a_patient_already_on_ixabepilone_only_the_checks_that_ran_are_named_and_labs_are_not_listed(kb):
    """No ixabepilone draft, a strong inhibitor drafted, ixabepilone active in the record: only the interaction
    and live-vaccine checks run (issue 12 item 6), so a missing kind of data names those alone, and the labs
    they do not read are not reported."""
    regimen = dataclasses.replace(drug("ixabepilone"), display="ixabepilone 45 MG Injection")
    facts = with_labs(
        dataclasses.replace(make_facts(orders=(), draft_orders=(drug("clarithromycin", origin="draft"),)),
                            medications=(regimen,), unavailable={"medicationStatements": "FHIR server timeout"}),
        platelets=lab("platelets", None, problem="no value"),
    )
    card = only(evaluate(facts, kb), "check-unavailable")
    assert card.summary == "Could not check: medicationStatements not read"
    assert ("checks that went without it: Strong CYP3A4 inhibitor, Strong CYP3A4 inducer.") in card.detail


def on_ixabepilone(course, *drafts):
    return make_facts(orders=(), draft_orders=drafts or (drug("clarithromycin", origin="draft"),),
                      medications=tuple(c for c in course if c.status not in ("stopped", "completed")),
                      stopped_medications=tuple(c for c in course if c.status in ("stopped", "completed")))


def ixabepilone_course(status="active", *, days=None):
    use = dataclasses.replace(drug("ixabepilone"), display="ixabepilone 45 MG Injection", status=status)
    return dataclasses.replace(use, ended=ago(days)) if days is not None else use


@pytest.mark.parametrize(("course", "named"), [
    ((ixabepilone_course(),), "(active order)"),
    ((ixabepilone_course("completed", days=10),), "(ixabepilone given 2026-11-15)"),
    ((ixabepilone_course("completed", days=20), ixabepilone_course("stopped", days=5)),
     "(ixabepilone given 2026-11-20)"),  # the latest dose given
    ((ixabepilone_course("completed", days=21),), "(ixabepilone given 2026-11-04)"),  # next cycle due: still on it
    ((ixabepilone_course("completed", days=22),), None),  # past one 3-week cycle [L §2.1]: not on ixabepilone
])
def test_a_strong_inhibitor_ordered_for_a_patient_on_ixabepilone_names_the_course(kb, course, named):
    findings = evaluate(on_ixabepilone(course), kb)
    if named is None:
        assert findings == []
        return
    card = only(findings, "cyp3a4-strong-inhibitor")
    assert card.summary == f"Strong CYP3A4 inhibitor clarithromycin for a patient on ixabepilone {named}: avoid, or use 20 mg/m2"
    assert "**The patient is on ixabepilone** (an active order, or one given in the last 21 days, one cycle" in card.detail
    assert "- **ixabepilone 45 MG Injection**" in card.detail
