from __future__ import annotations

import dataclasses

import pytest

from cds_services.rules import evaluate
from cds_services.rules.interactions import cyp3a4_other, cyp3a4_strong_inducer, cyp3a4_strong_inhibitor
from tests.cds_services.rules.conftest import (
    add_drafts,
    add_meds,
    ago,
    drug,
    ixabepilone_order,
    ixabepilone_resource,
    make_facts,
    only,
)
from tests.support import markdown_text


@pytest.mark.parametrize("drug_id", ["ketoconazole", "clarithromycin", "ritonavir", "posaconazole", "nirmatrelvir"])
def test_strong_inhibitor_active_or_draft(kb, drug_id):
    for facts in (add_meds(make_facts(), drug(drug_id)), add_drafts(make_facts(), drug(drug_id, origin="draft"))):
        finding = only(list(cyp3a4_strong_inhibitor(facts, kb)), "cyp3a4-strong-inhibitor")
        assert finding.indicator == "warning"
        assert "20 mg/m2" in finding.summary
        assert "1 week" in finding.detail and "Grapefruit" in finding.detail


def test_strong_inhibitor_suggests_20_mg_per_m2(kb):
    finding = only(list(cyp3a4_strong_inhibitor(add_meds(make_facts(), drug("itraconazole")), kb)), "cyp3a4-strong-inhibitor")
    action = finding.suggestions[0].actions[0]
    assert action.type == "update"
    assert action.resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 20


def test_already_reduced_order_gets_no_update(kb):
    from tests.cds_services.rules.conftest import ixabepilone_order

    order = ixabepilone_order(mg_per_m2=20)
    facts = add_meds(make_facts(orders=(order,), draft_orders=(order,)), drug("itraconazole"))
    assert only(list(cyp3a4_strong_inhibitor(facts, kb)), "cyp3a4-strong-inhibitor").suggestions == ()


def test_several_inhibitors_one_card(kb):
    facts = add_meds(make_facts(), drug("ketoconazole"), drug("clarithromycin"), drug("ritonavir"), drug("atazanavir"))
    findings = evaluate(facts, kb)
    finding = only(findings, "cyp3a4-strong-inhibitor")
    assert "+1 more" in finding.summary
    for name in ("ketoconazole", "clarithromycin", "ritonavir", "atazanavir"):
        assert name in finding.detail


@pytest.mark.parametrize("drug_id", ["carbamazepine", "rifampin", "st-johns-wort", "rifabutin", "primidone"])
def test_active_strong_inducer(kb, drug_id):
    finding = only(list(cyp3a4_strong_inducer(add_meds(make_facts(), drug(drug_id)), kb)), "cyp3a4-strong-inducer")
    assert finding.indicator == "warning"
    assert "St John's wort" in finding.detail


def test_cards_name_drugs_not_their_ids(kb):
    finding = only(list(cyp3a4_strong_inducer(add_meds(make_facts(), drug("st-johns-wort")), kb)), "cyp3a4-strong-inducer")
    assert "st john's wort" in finding.summary and "st-johns-wort" not in finding.summary
    assert "st john's wort [L §7]" in finding.detail


def test_sources_disagree_note_is_on_the_card(kb):
    finding = only(list(cyp3a4_strong_inducer(add_meds(make_facts(), drug("rifabutin")), kb)), "cyp3a4-strong-inducer")
    assert "Sources disagree" in finding.detail


def test_draft_dexamethasone_premedication_is_not_chronic_induction(kb):
    facts = add_drafts(make_facts(), drug("dexamethasone", origin="draft"))
    assert list(cyp3a4_strong_inducer(facts, kb)) == []


def test_active_dexamethasone_counts_and_draft_one_is_explained(kb):
    facts = add_drafts(add_meds(make_facts(), drug("phenytoin")), drug("dexamethasone", origin="draft"))
    finding = only(list(cyp3a4_strong_inducer(facts, kb)), "cyp3a4-strong-inducer")
    assert "phenytoin" in finding.summary and "dexamethasone" not in finding.summary
    assert "not chronic induction" in finding.detail
    facts = add_meds(make_facts(), drug("dexamethasone"))
    assert "dexamethasone" in only(list(cyp3a4_strong_inducer(facts, kb)), "cyp3a4-strong-inducer").summary


@pytest.mark.parametrize("drug_id", ["fluconazole", "erythromycin", "oxcarbazepine", "cimetidine", "grapefruit"])
def test_other_interactions_are_info(kb, drug_id):
    finding = only(list(cyp3a4_other(add_meds(make_facts(), drug(drug_id)), kb)), "cyp3a4-other")
    assert finding.indicator == "info" and drug_id in finding.summary


def test_strong_drugs_do_not_also_make_an_other_card(kb):
    facts = add_meds(make_facts(), drug("ketoconazole"), drug("rifampin"))
    assert list(cyp3a4_other(facts, kb)) == []


@pytest.mark.parametrize(("rule", "record", "draft"), [
    (cyp3a4_strong_inhibitor, "ketoconazole", "clarithromycin"),  # label §7: strong inhibitors
    (cyp3a4_strong_inducer, "rifampin", "carbamazepine"),  # label §7: strong inducers
])
def test_the_suggestion_removes_only_the_drafted_interacting_order(kb, rule, record, draft):
    """A patient already on ixabepilone (no ixabepilone draft): the interacting draft can be deleted from the order
    list (CDS Hooks 2.0 action "delete" on a draft order's id); a medication already in the record is not an
    order being written, so it is named on the card, not deleted."""
    facts = add_drafts(add_meds(make_facts(orders=(), draft_orders=()), drug(record)), drug(draft, origin="draft"))
    finding = only(list(rule(facts, kb)), rule.code)
    remove = [s for s in finding.suggestions if any(a.type == "delete" for a in s.actions)]
    assert len(remove) == 1
    assert remove[0].is_recommended is True
    assert remove[0].label == "Remove the interacting order"
    assert [(a.type, a.resource_id) for a in remove[0].actions] == [("delete", f"MedicationRequest/{draft}-draft")]
    assert draft in remove[0].actions[0].description and "label §7" in remove[0].actions[0].description


def stopped(drug_id: str, days: float, basis: str = "MedicationRequest.dispenseRequest.validityPeriod.end"):
    return dataclasses.replace(drug(drug_id), status="stopped", ended=ago(days), ended_basis=basis)


@pytest.mark.parametrize(("days", "counts"), [(3, True), (6, True), (8, False)])
def test_a_strong_inhibitor_stopped_within_about_a_week_still_counts(kb, days, counts):
    """Label §7: after a strong CYP3A4 inhibitor stops, wait about 1 week before returning to the full dose."""
    facts = dataclasses.replace(make_facts(), stopped_medications=(stopped("ketoconazole", days),))
    findings = list(cyp3a4_strong_inhibitor(facts, kb))
    assert bool(findings) is counts
    if days == 3:  # stopped 2026-11-22: full dose again from 2026-11-29
        detail = markdown_text(findings[0].detail)
        assert ("stopped 2026-11-22 (MedicationRequest.dispenseRequest.validityPeriod.end); return to the full dose "
                "about 1 week after it stopped (from 2026-11-29) [L §7]") in detail


def test_an_active_inhibitor_order_whose_course_ended_is_named_for_review(kb):
    """Still active in the record, but its supply ran out ten days ago: counted, and the card asks to confirm."""
    use = dataclasses.replace(drug("clarithromycin"), ended=ago(10), ended_basis="supply of 10 days")
    detail = markdown_text(only(list(cyp3a4_strong_inhibitor(add_meds(make_facts(), use), kb)),
                                "cyp3a4-strong-inhibitor").detail)
    assert ("still an active order, but its course ended 2026-11-15 (supply of 10 days; 10 d ago): "
            "confirm it is still taken and discontinue it if not") in detail


@pytest.mark.parametrize(("exposure", "basis", "note"), [
    ("systemic", "route Oral", "systemic: route Oral"),
    (None, None, "route and dose form not recorded: counted as systemic"),
])
def test_each_inhibitor_line_says_why_it_counts_as_systemic(kb, exposure, basis, note):
    use = dataclasses.replace(drug("itraconazole"), exposure=exposure, exposure_basis=basis)
    detail = markdown_text(only(list(cyp3a4_strong_inhibitor(add_meds(make_facts(), use), kb)),
                                "cyp3a4-strong-inhibitor").detail)
    assert f"\n  - {note}" in detail


def test_the_reduced_dose_replaces_the_whole_dosage_with_the_labels_schedule(kb):
    """Label §2.1/§7: 20 mg/m2 with a strong inhibitor, as a 3-hour IV infusion every 3 weeks; FHIR R4 Timing,
    SNOMED CT 47625008 (intravenous route), UCUM mg/m2. The draft's own sequence is kept; its id, medication and
    subject are the draft's."""
    order = dataclasses.replace(ixabepilone_order(), resource={
        **ixabepilone_resource(), "dosageInstruction": [{"sequence": 2, "text": "40 mg/m2 daily",
                                                         "timing": {"repeat": {"frequency": 1, "period": 1,
                                                                               "periodUnit": "d"}}}]})
    facts = add_meds(make_facts(orders=(order,), draft_orders=(order,)), drug("itraconazole"))
    action = only(list(cyp3a4_strong_inhibitor(facts, kb)), "cyp3a4-strong-inhibitor").suggestions[0].actions[0]
    assert action.resource["id"] == "ixa-1"
    assert action.resource["subject"] == {"reference": "Patient/pat-1"}
    assert action.resource["medicationCodeableConcept"]["coding"][0]["code"] == "1726271"
    assert action.resource["dosageInstruction"] == [{
        "sequence": 2,
        "text": "20 mg/m2 IV over 3 hours every 3 weeks (strong CYP3A4 inhibitor, label §7)",
        "timing": {"repeat": {"frequency": 1, "period": 3, "periodUnit": "wk", "duration": 3, "durationUnit": "h"}},
        "route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008", "display": "Intravenous route"}],
                  "text": "intravenous"},
        "doseAndRate": [{"doseQuantity": {"value": 20, "unit": "mg/m2", "system": "http://unitsofmeasure.org",
                                          "code": "mg/m2"}}],
    }]
    assert facts.orders[0].resource["dosageInstruction"][0]["sequence"] == 2  # the draft itself is unchanged


def test_the_strong_inducer_card_quotes_the_label(kb):
    """Label §7: avoid strong CYP3A4 inducers (rifampin lowered ixabepilone AUC by 43%, §12.3); if unavoidable,
    raise gradually toward 60 mg/m2 over 4 hours with close monitoring; St John's wort (ixabepilone.md)."""
    finding = only(list(cyp3a4_strong_inducer(add_meds(make_facts(), drug("rifampin")), kb)), "cyp3a4-strong-inducer")
    assert finding.summary == "Strong CYP3A4 inducer rifampin: may lower ixabepilone levels; avoid"
    assert markdown_text(finding.detail).splitlines() == [
        "- **rifampin**, active order (active), 2026-11-15, MedicationRequest/rifampin-request: rifampin [L §7] "
        "(Lowered ixabepilone AUC by 43% [L §12.3].)",
        "  - route and dose form not recorded: counted as systemic",
        "",
        "Only chronic, systemic use counts: active medications, and draft orders other than a dexamethasone "
        "premedication; local forms (eye drops, creams, shampoos) do not.",
        "",
        "**Label:** avoid strong CYP3A4 inducers (rifampin lowered ixabepilone AUC by 43%). If one cannot be avoided, "
        "the dose may be raised gradually toward 60 mg/m2 given over 4 hours, with close monitoring [L §7].",
        "",
        "- St John's wort is a strong CYP3A4 inducer and may lower ixabepilone levels unpredictably: the patient "
        "should not take it [L §7; S].",
        "",
        "**What to do:** choose an alternative without CYP3A4 induction where possible.",
    ]
    assert finding.suggestions == ()  # an ixabepilone draft is being written: the inducer is not ours to delete


def test_the_moderate_interaction_card_says_the_label_gives_no_dose_change(kb):
    finding = only(list(cyp3a4_other(add_meds(make_facts(), drug("fluconazole")), kb)), "cyp3a4-other")
    assert finding.summary == "CYP3A4 interaction: fluconazole (moderate inhibitor) may change ixabepilone levels"
    assert markdown_text(finding.detail).splitlines() == [
        "- **fluconazole**, active order (active), 2026-11-15, MedicationRequest/fluconazole-request: "
        "fluconazole [F CYP3A moderate inhibitors]",
        "  - route and dose form not recorded: counted as systemic",
        "",
        "Moderate and weak CYP3A4 inhibitors or inducers change ixabepilone exposure less than strong ones; the label "
        "gives no dose change for them [L §7; F]. Monitor for toxicity (inhibitors) or reduced effect (inducers).",
        "",
        "- Grapefruit and grapefruit juice inhibit CYP3A4 and may raise ixabepilone levels: the patient should avoid "
        "them during treatment [L §7; S].",
    ]


def test_the_strong_inhibitor_card_quotes_the_label(kb):
    """Label §7: avoid strong CYP3A4 inhibitors (ketoconazole raised ixabepilone AUC by 79%, §12.3); if unavoidable
    reduce to 20 mg/m2; after the inhibitor stops, about 1 week before the full dose; grapefruit (ixabepilone.md)."""
    facts = add_meds(make_facts(), drug("ketoconazole"), drug("clarithromycin"))
    finding = only(list(cyp3a4_strong_inhibitor(facts, kb)), "cyp3a4-strong-inhibitor")
    assert finding.summary == "Strong CYP3A4 inhibitors ketoconazole, clarithromycin: avoid, or reduce ixabepilone to 20 mg/m2"
    assert markdown_text(finding.detail).splitlines() == [
        "- **ketoconazole**, active order (active), 2026-11-15, MedicationRequest/ketoconazole-request: ketoconazole "
        "[L §7] (Raised ixabepilone AUC by 79% [L §12.3].)",
        "  - route and dose form not recorded: counted as systemic",
        "- **clarithromycin**, active order (active), 2026-11-15, MedicationRequest/clarithromycin-request: "
        "clarithromycin [L §7]",
        "  - route and dose form not recorded: counted as systemic",
        "",
        "**Label:** avoid strong CYP3A4 inhibitors (ketoconazole raised ixabepilone AUC by 79%). If one cannot be "
        "avoided, reduce ixabepilone to **20 mg/m2**; after the inhibitor is stopped, wait about 7 days (1 week) before "
        "returning to the full dose [L §7].",
        "",
        "- Grapefruit and grapefruit juice inhibit CYP3A4 and may raise ixabepilone levels: the patient should avoid "
        "them during treatment [L §7; S].",
        "",
        "**What to do:** choose an alternative without CYP3A4 inhibition, or reduce the ixabepilone dose.",
    ]
    stopped_only = dataclasses.replace(make_facts(), stopped_medications=(stopped("ketoconazole", 3),))
    assert only(list(cyp3a4_strong_inhibitor(stopped_only, kb)), "cyp3a4-strong-inhibitor").summary == (
        "Strong CYP3A4 inhibitor ketoconazole stopped 2026-11-22: keep ixabepilone at 20 mg/m2 until about 1 week after")


def test_a_stopped_local_form_of_an_inhibitor_does_not_count(kb):
    """Ketoconazole cream stopped three days ago gave no systemic exposure: no washout to wait for [L §7]."""
    cream = dataclasses.replace(stopped("ketoconazole", 3), exposure="local", exposure_basis="dose form Cream")
    assert list(cyp3a4_strong_inhibitor(dataclasses.replace(make_facts(), stopped_medications=(cream,)), kb)) == []


@pytest.mark.parametrize(("intent", "shown"), [("plan", True), ("proposal", True), ("order", False), (None, False)])
def test_an_inhibitor_only_planned_or_proposed_says_so(kb, intent, shown):
    """FHIR R4 MedicationRequest.intent: a plan or proposal is not an order yet, and the line says which."""
    use = dataclasses.replace(drug("itraconazole"), intent=intent)
    detail = only(list(cyp3a4_strong_inhibitor(add_meds(make_facts(), use), kb)), "cyp3a4-strong-inhibitor").detail
    assert (f"; intent {intent}" in detail) is shown


def test_a_local_form_of_an_inducer_is_named_as_not_counted(kb):
    gel = dataclasses.replace(drug("carbamazepine", display="carbamazepine gel"), exposure="local",
                              exposure_basis="dose form Gel")
    finding = only(list(cyp3a4_strong_inducer(add_meds(make_facts(), gel, drug("rifampin")), kb)), "cyp3a4-strong-inducer")
    assert "Not counted (local use" in finding.detail and "**carbamazepine gel**" in finding.detail
