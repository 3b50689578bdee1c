"""build_facts: drafts, orders, current medications, statuses and problems together."""
from __future__ import annotations

from fhir_mappings import build_facts
from fhir_mappings.resources import parse_resources, resources_from_bundle
from tests.fhir_mappings.fhirdata import NOW, PATIENT, fixture, medication_request, model, observation, raw, rxnorm


def record(*raws):
    parsed, problems = parse_resources(raws, PATIENT)
    assert problems == []
    return parsed


def test_ixabepilone_drafts_become_orders_with_dose_and_json():
    drafts = [fixture("medicationrequest-ixempra-rxnorm.json"), fixture("medicationrequest-contained-ingredient.json"),
              fixture("medicationrequest-name-only.json"),
              model(medication_request(rxnorm("3498", "diphenhydramine"), oid="premed", status="draft"))]
    facts = build_facts([], drafts, PATIENT, NOW)
    assert [o.ref for o in facts.orders] == [
        "MedicationRequest/draft-ixa-1", "MedicationRequest/draft-ixa-2", "MedicationRequest/draft-ixa-3"]
    assert len(facts.draft_orders) == 4 and all(d.origin == "draft" for d in facts.draft_orders)
    first = facts.orders[0]
    assert first.dose.mg_per_m2 == 40
    assert first.resource["resourceType"] == "MedicationRequest" and first.resource["id"] == "draft-ixa-1"
    assert first.resource["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 40
    assert facts.orders[1].dose.mg == 66
    # a dose range is checked at its upper bound (issue 12 item 5)
    assert facts.orders[2].dose.mg_per_m2 == 40 and facts.orders[2].dose.kind == "range, upper bound"


def test_draft_without_medication_or_of_another_type_is_skipped():
    empty = medication_request(None, oid="empty", status="draft")
    service = {"resourceType": "ServiceRequest", "id": "sr", "status": "draft", "intent": "order",
               "subject": {"reference": f"Patient/{PATIENT}"}, "code": {"text": "CBC"}}
    drafts, problems = parse_resources([empty, service], PATIENT)
    assert drafts == [] and problems == []  # no medication, or a type no check reads: nothing to check, not an error
    facts = build_facts([], drafts, PATIENT, NOW)
    assert facts.draft_orders == () and facts.orders == () and facts.problems == ()


def test_current_medications_from_requests_and_statements():
    bundle = resources_from_bundle(raw("medicationrequest-prefetched-medication.json"))
    statement = {"resourceType": "MedicationStatement", "id": "ms1", "status": "active",
                 "medicationCodeableConcept": rxnorm("4053", "erythromycin"), "subject": {"reference": f"Patient/{PATIENT}"},
                 "effectiveDateTime": "2026-11-10"}
    plan = medication_request(rxnorm("9384", "rifampin"), oid="plan", intent="plan")
    on_hold = medication_request(rxnorm("2002", "carbamazepine"), oid="hold", status="on-hold")
    not_to_give = medication_request(rxnorm("6135", "ketoconazole"), oid="dnp", doNotPerform=True)
    facts = build_facts(record(*bundle, statement, plan, on_hold, not_to_give), [], PATIENT, NOW)
    found = {m.ref: (set(m.drugs), m.origin) for m in facts.medications}
    assert found == {
        "MedicationRequest/mr-keto": ({"ketoconazole"}, "request"),
        "MedicationRequest/hold": ({"carbamazepine"}, "request"),
        "MedicationRequest/plan": ({"rifampin"}, "request"),  # an active plan is exposure (issue 12 item 4)
        "MedicationStatement/ms1": ({"erythromycin"}, "statement"),
    }


def test_draft_is_not_also_a_current_medication():
    order = raw("medicationrequest-ixempra-rxnorm.json")
    active_copy = {**order, "status": "active"}
    facts = build_facts([model(active_copy)], [model(order)], PATIENT, NOW)
    assert facts.medications == () and len(facts.orders) == 1


def test_missing_referenced_medication_is_a_problem_not_a_silent_pass():
    (order, _) = resources_from_bundle(raw("medicationrequest-prefetched-medication.json"))
    facts = build_facts([model(order)], [], PATIENT, NOW, problems=("earlier problem",))
    assert facts.problems[0] == "earlier problem"
    assert "Medication/med-keto was not found" in facts.problems[1]


def test_statuses_labs_and_demographics_together():
    patient = {"resourceType": "Patient", "id": PATIENT, "gender": "female", "birthDate": "1968-04-02"}
    resources = record(patient, raw("observation-platelets-80.json"), raw("condition-pregnancy.json"),
                       raw("allergy-cremophor.json"), raw("procedure-radiotherapy.json"), raw("immunization-mmr.json"))
    facts = build_facts(resources, [], PATIENT, NOW)
    assert facts.labs["platelets"].value == 80_000
    assert [e.ref for e in facts.pregnancy] == ["Condition/preg-1"]
    assert facts.allergies[0].substances == {"cremophor"}
    assert facts.radiotherapy[0].ref == "Procedure/rt-1" and facts.live_vaccines[0].code == "03"
    cleared = build_facts(resources + record(raw("observation-not-pregnant.json")), [], PATIENT, NOW)
    assert cleared.pregnancy == ()


def test_ten_thousand_resource_record_keeps_latest_labs_and_the_medications_that_matter():
    """Speed is measured in bench/; here: a large record still gives the right facts.

    Lisinopril names no drug of drugs.json, so its 900 orders are skipped
    unparsed; the 100 clarithromycin orders (a strong CYP3A4 inhibitor) all stay.
    """
    raws = [observation(("777-3", "751-8", "6690-2", "1920-8", "1742-6", "1975-2")[i % 6], 5.0, "10*3/uL" if i % 6 < 3 else "U/L",
                        oid=f"o{i}", when=f"2026-{1 + i % 11:02d}-{1 + i % 28:02d}T08:00:00Z") for i in range(8_000)]
    raws += [medication_request(rxnorm("314076", "lisinopril 10 MG Oral Tablet"), oid=f"m{i}") for i in range(900)]
    raws += [medication_request(rxnorm("21212", "clarithromycin"), oid=f"c{i}") for i in range(100)]
    raws += [observation("2345-7", 5.0, "mmol/L", oid=f"g{i}") for i in range(1_000)]
    parsed, problems = parse_resources(raws, PATIENT, now=NOW, record=True)
    facts = build_facts(parsed, [], PATIENT, NOW)
    assert problems == [] and set(facts.labs) == {"platelets", "neutrophils", "wbc", "ast", "alt", "bilirubin"}
    assert len(facts.medications) == 100 and all(m.drugs == {"clarithromycin"} for m in facts.medications)
    assert facts.labs["platelets"].effective.isoformat().startswith("2026-11-")
