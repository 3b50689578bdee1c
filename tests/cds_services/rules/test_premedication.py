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


def test_each_suggested_premedication_is_one_order_of_the_labels_dose_an_hour_before(kb):
    """Label §2.3 (ixabepilone.md, Premedication): about 1 hour before the infusion an H1 antagonist
    (diphenhydramine 50 mg orally) and an H2 antagonist (famotidine for the label's ranitidine); SNOMED CT
    26643006 oral route, UCUM mg, authored now (2026-11-25T15:00Z)."""
    finding = only(list(premedication_missing(bare(), kb)), "premedication-missing")
    assert finding.summary == "No H1 and H2 antagonist premedication ordered: give 1 hour before ixabepilone"
    h1, h2 = finding.suggestions
    assert (h1.label, h1.is_recommended) == ("Order diphenhydramine 50 mg PO (H1 antagonist)", True)
    assert (h2.label, h2.is_recommended) == ("Order famotidine 20 mg PO (H2 antagonist)", True)
    (action,) = h1.actions
    assert action.description == "H1 antagonist premedication: diphenhydramine hydrochloride 50 MG Oral Capsule, 50 mg PO"
    assert action.resource["authoredOn"] == "2026-11-25T15:00:00Z"
    assert action.resource["medicationCodeableConcept"] == {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1020477",
                    "display": "diphenhydramine hydrochloride 50 MG Oral Capsule"}],
        "text": "diphenhydramine hydrochloride 50 MG Oral Capsule"}
    assert action.resource["dosageInstruction"] == [{
        "text": "50 mg PO once, 1 hour before the infusion of ixabepilone",
        "route": {"coding": [{"system": "http://snomed.info/sct", "code": "26643006", "display": "Oral route"}],
                  "text": "oral"},
        "doseAndRate": [{"doseQuantity": {"value": 50, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}],
    }]
    lines = finding.detail.splitlines()
    assert lines[:2] == ["- Missing: H1 and H2 antagonist.", ""]
    assert lines[2] == ("**Label:** about 1 hour before each infusion give an H1 antagonist (e.g. diphenhydramine 50 mg "
                        "orally) and an H2 antagonist (e.g. ranitidine 150-300 mg orally) [L §2.3].")
    assert "- Cimetidine is not suggested: it inhibits CYP3A4 and may raise ixabepilone levels [F]." in lines
    assert ("- After a prior hypersensitivity reaction also give a corticosteroid (dexamethasone 20 mg IV, 30 minutes "
            "before the infusion, or orally 60 minutes before) [L §2.3].") in lines


def test_a_present_antagonist_is_named_and_a_local_form_does_not_count(kb):
    """Issue 12 item 3: a cream or eye drop of an antihistamine is not premedication."""
    import dataclasses

    cream = dataclasses.replace(drug("diphenhydramine", origin="draft", display="diphenhydramine 2% cream"),
                                exposure="local")
    facts = add_drafts(bare(), cream, drug("famotidine", origin="draft", display="famotidine 20 MG Oral Tablet"))
    finding = only(list(premedication_missing(facts, kb)), "premedication-missing")
    assert finding.summary.startswith("No H1 antagonist premedication ordered")
    assert finding.detail.splitlines()[:2] == ["- Missing: H1 antagonist.", "- Present: H2: famotidine 20 MG Oral Tablet."]


def test_no_card_when_the_medication_list_could_not_be_read(kb):
    import dataclasses

    for kind in ("medicationRequests", "medicationStatements"):
        facts = dataclasses.replace(bare(), unavailable={kind: "FHIR server error (500)"})
        assert list(premedication_missing(facts, kb)) == []
