from __future__ import annotations

import dataclasses

import pytest

from cds_services.rules.vaccines import live_vaccine
from fhir_mappings.facts import Evidence
from tests.cds_services.rules.conftest import drug, evidence, make_facts, only


@pytest.mark.parametrize("days, fires", [(29, True), (30, True), (31, False)])
def test_live_vaccine_window(kb, days, fires):
    facts = make_facts(live_vaccines=(evidence("Zoster live vaccine (CVX 121)", days=days, code="121"),))
    findings = list(live_vaccine(facts, kb))
    assert bool(findings) is fires
    if fires:
        assert findings[0].indicator == "warning"


def test_ordered_live_vaccine_fires(kb):
    facts = make_facts(live_vaccines=(evidence("MMR vaccine order (CVX 03)", days=0, code="03"),))
    finding = only(list(live_vaccine(facts, kb)), "live-vaccine")
    assert "MMR" in finding.summary and "code 03" in finding.detail


def test_a_live_vaccine_given_recently_is_named_with_the_reason_and_what_to_do(kb):
    """[S]: chemotherapy suppresses immunity; live vaccines (CVX 121 zoster live) avoided; window 30 days."""
    facts = make_facts(live_vaccines=(evidence("Zoster live vaccine (CVX 121)", days=12, code="121"),))
    finding = only(list(live_vaccine(facts, kb)), "live-vaccine")
    assert finding.summary == "Live vaccine Zoster live vaccine (CVX 121): avoid live vaccines with chemotherapy"
    assert finding.detail.splitlines() == [
        "- **Zoster live vaccine (CVX 121)**, 2026-11-13 (12 d ago), code 121, Condition/c-1",
        "",
        "Chemotherapy suppresses immunity: live vaccines are to be avoided during treatment [S].",
        "Counted: given within 30 days (a project setting), or ordered (draft or active order).",
        "",
        "**What to do:** cancel a live-vaccine order, or discuss timing; inactivated vaccines are not affected.",
    ]
    assert finding.suggestions == ()  # nothing of ours to delete: the vaccine was given


def test_a_live_vaccine_ordered_for_a_patient_already_on_ixabepilone_can_be_removed(kb):
    """No ixabepilone draft, an MMR order (CVX 03) drafted, ixabepilone active in the record (issue 12 item 6):
    the card names the course, and suggests deleting the draft (CDS Hooks 2.0 "delete" action)."""
    order = Evidence(label="MMR vaccine order (CVX 03)", date=None, ref="MedicationRequest/mmr-draft", code="03")
    given = evidence("Zoster live vaccine (CVX 121)", days=5, code="121")  # not what this order is about
    course = dataclasses.replace(drug("ixabepilone"), display="ixabepilone 45 MG Injection")
    facts = make_facts(orders=(), medications=(course,), live_vaccines=(given,),
                       draft_orders=(dataclasses.replace(drug("mmr", origin="draft"), ref="MedicationRequest/mmr-draft"),),
                       ordered_live_vaccines=(order, dataclasses.replace(order, ref="MedicationRequest/elsewhere")))
    finding = only(list(live_vaccine(facts, kb)), "live-vaccine")
    assert finding.summary == ("Live vaccine MMR vaccine order (CVX 03) ordered for a patient on ixabepilone: "
                               "avoid live vaccines with chemotherapy")
    lines = finding.detail.splitlines()
    assert lines[:4] == ["- **MMR vaccine order (CVX 03)**, date unknown, code 03, MedicationRequest/mmr-draft", "",
                         "**The patient is on ixabepilone:**",
                         "- **ixabepilone 45 MG Injection**, active order (active), 2026-11-15, "
                         "MedicationRequest/ixabepilone-request"]
    (suggestion,) = finding.suggestions
    assert (suggestion.label, suggestion.is_recommended) == ("Remove the live vaccine order", True)
    assert [(a.type, a.resource_id, a.description) for a in suggestion.actions] == [
        ("delete", "MedicationRequest/mmr-draft", "Remove the draft order MMR vaccine order (CVX 03)")]
