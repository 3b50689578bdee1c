from __future__ import annotations

from fhir.resources.R4B.medicationrequest import MedicationRequest

from cds_services.rules.premedication import premedication_missing
from tests.cds_services.rules.conftest import PATIENT, add_drafts, add_meds, drug, ixabepilone_order, make_facts, only


def bare():
    order = ixabepilone_order()
    return make_facts(orders=(order,), draft_orders=(order,))


def test_both_missing_suggests_diphenhydramine_and_famotidine(kb):
    finding = only(list(premedication_missing(bare(), kb)), "premedication-missing")
    assert finding.indicator == "info"
    assert "H1 and H2" in finding.summary
    assert finding.selection_behavior == "any"
    resources = [a.resource for s in finding.suggestions for a in s.actions]
    assert [a.type for s in finding.suggestions for a in s.actions] == ["create", "create"]
    codes = [r["medicationCodeableConcept"]["coding"][0]["code"] for r in resources]
    assert codes == ["1020477", "310273"]
    for resource in resources:
        parsed = MedicationRequest.model_validate(resource)
        assert parsed.status == "draft" and parsed.intent == "order"
        assert parsed.subject.reference == f"Patient/{PATIENT}"
    assert "Grapefruit" in finding.detail and "St John's wort" in finding.detail


def test_never_suggests_cimetidine(kb):
    finding = only(list(premedication_missing(bare(), kb)), "premedication-missing")
    text = str([a.resource for s in finding.suggestions for a in s.actions]).lower()
    assert "cimetidine" not in text


def test_only_h2_missing(kb):
    facts = add_drafts(bare(), drug("diphenhydramine", origin="draft"))
    finding = only(list(premedication_missing(facts, kb)), "premedication-missing")
    assert "No H2 antagonist" in finding.summary
    assert len(finding.suggestions) == 1 and "famotidine" in finding.suggestions[0].label


def test_active_antagonists_count(kb):
    facts = add_meds(bare(), drug("cetirizine"), drug("nizatidine"))
    assert list(premedication_missing(facts, kb)) == []


def test_both_present_no_card(kb):
    assert list(premedication_missing(make_facts(), kb)) == []
