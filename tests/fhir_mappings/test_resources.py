"""Parsing: one bad resource does not sink the rest; no other patient's data; duplicates once."""
from __future__ import annotations

from typing import Any, cast

import pytest

from fhir_mappings.reading import READ_ELEMENTS, unreadable_elements
from fhir_mappings.resources import parse_resource, parse_resources, resources_from_bundle
from tests.fhir_mappings.fhirdata import NOW, PATIENT, observation, raw


def test_resources_from_bundle_tolerates_missing_parts():
    assert resources_from_bundle({"resourceType": "Bundle"}) == []
    assert resources_from_bundle({"entry": [{"fullUrl": "x"}, {"resource": {"resourceType": "Patient", "id": "a"}}, "junk"]}) == [
        {"resourceType": "Patient", "id": "a"}]
    bundle = raw("medicationrequest-prefetched-medication.json")
    assert [r["id"] for r in resources_from_bundle(bundle)] == ["mr-keto", "med-keto"]


def test_parse_resource_reads_r4_json_with_the_r4b_models():
    resource, problem = parse_resource(raw("observation-platelets-80.json"))
    assert problem is None and resource.get_resource_type() == "Observation" and resource.id == "plt-1"


@pytest.mark.parametrize(("data", "words"), [
    ({"resourceType": "Nonsense", "id": "n1"}, ["Nonsense/n1", "not a FHIR R4 resource type"]),
    ({"id": "x"}, ["no resourceType"]),
    ("a string", ["not a FHIR resource"]),
])
def test_what_is_not_a_resource_gets_one_short_sentence(data, words):
    resource, problem = parse_resource(data)
    assert resource is None
    assert all(w in problem for w in words) and len(problem) < 250 and "Traceback" not in problem


def test_a_datatype_sent_as_a_resource_is_named_not_dropped_in_silence():
    """Regression (mypy, issue 13): Quantity is a FHIR datatype, not a resource (R4 §2.24 datatypes); the
    model lookup returned its class, so the entry was neither read nor reported."""
    resource, problem = parse_resource({"resourceType": "Quantity", "id": "q1", "value": 80})
    assert resource is None
    assert problem == "Quantity/q1: 'Quantity' is not a FHIR R4 resource type."


def test_an_element_no_check_reads_is_passed_over_whatever_its_shape():
    """The CDS Hooks sandbox sends category as one object; an unknown element, a bad narrative: not read."""
    data = {**observation("777-3", 80, "10*3/uL", oid="plt"), "foo": 1, "category": {"text": "Laboratory"},
            "text": {"status": "nonsense"}, "meta": {"lastUpdated": "not a date"}}
    resource, problem = parse_resource(data)
    obs: Any = resource
    assert problem is None and obs.valueQuantity.value == 80 and unreadable_elements(resource) == {}


def test_a_malformed_element_that_is_read_is_named_and_the_rest_is_kept():
    data = {**observation("777-3", 80, "10*3/uL", oid="bad"), "effectiveDateTime": "yesterday"}
    parsed, problems = parse_resources([data], PATIENT)
    obs: Any = parsed[0]
    assert obs.valueQuantity.value == 80 and obs.effectiveDateTime is None
    assert "effectiveDateTime" in unreadable_elements(parsed[0])
    assert len(problems) == 1 and problems[0].startswith("Observation/bad: its effectiveDateTime is not valid FHIR R4")


def test_an_object_where_r4_wants_a_list_is_read_as_a_list_of_one_at_any_depth():
    """The CDS Hooks 2.0 order-sign example sends doseAndRate as an object."""
    order = {"resourceType": "MedicationRequest", "id": "mr", "status": "draft", "intent": "order",
             "medicationCodeableConcept": {"coding": {"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                      "code": "1726276"}},
             "dosageInstruction": [{"doseAndRate": {"doseQuantity": {"value": 72, "unit": "mg"}}}]}
    resource, problem = parse_resource(order)
    request: Any = resource
    assert problem is None and unreadable_elements(resource) == {}
    assert request.dosageInstruction[0].doseAndRate[0].doseQuantity.value == 72
    assert request.medicationCodeableConcept.coding[0].code == "1726276"


def test_problem_does_not_echo_a_huge_input():
    huge = {**observation("777-3", 80, "10*3/uL", oid="big"), "effectiveDateTime": "x" * 100_000}
    _, problems = parse_resources([huge], PATIENT)
    assert len(problems) == 1 and len(problems[0]) < 250


def test_one_bad_resource_does_not_sink_the_rest():
    good = observation("777-3", 80, "10*3/uL", oid="good")
    bad = {"resourceType": "Observaton", "id": "bad"}
    parsed, problems = parse_resources([bad, good], PATIENT)
    assert [r.id for r in parsed] == ["good"]
    assert len(problems) == 1 and problems[0].startswith("Observaton/bad")


@pytest.mark.parametrize("reference", ["Patient/someone-else", "https://ehr.example.org/fhir/Patient/someone-else"])
def test_another_patients_resource_is_dropped_and_reported(reference):
    other = {**observation("777-3", 20, "10*3/uL", oid="theirs"), "subject": {"reference": reference}}
    mine = observation("777-3", 250, "10*3/uL", oid="mine")
    parsed, problems = parse_resources([other, mine], PATIENT)
    assert [r.id for r in parsed] == ["mine"]
    assert "Observation/theirs" in problems[0] and "another patient" in problems[0]


@pytest.mark.parametrize("reference", [f"Patient/{PATIENT}", f"https://ehr.example.org/fhir/Patient/{PATIENT}",
                                       f"Patient/{PATIENT}/_history/3"])
def test_own_patient_reference_forms_are_kept(reference):
    mine = {**observation("777-3", 250, "10*3/uL"), "subject": {"reference": reference}}
    parsed, problems = parse_resources([mine], PATIENT)
    assert len(parsed) == 1 and problems == []


def test_another_patient_resource_and_allergy_patient_field():
    allergy = raw("allergy-cremophor.json")
    allergy["patient"] = {"reference": "Patient/pat-2"}
    patient = {"resourceType": "Patient", "id": "pat-2"}
    parsed, problems = parse_resources([allergy, patient], PATIENT)
    assert parsed == [] and len(problems) == 2


def test_duplicate_resource_counts_once():
    plt = raw("observation-platelets-80.json")
    parsed, problems = parse_resources([plt, dict(plt), raw("observation-platelets-80.json")], PATIENT)
    assert len(parsed) == 1 and problems == []


def _versioned(value, *, updated=None, version=None):
    data = observation("777-3", value, "10*3/uL", oid="plt-1")
    data["meta"] = {k: v for k, v in (("lastUpdated", updated), ("versionId", version)) if v}
    return data


@pytest.mark.parametrize(("first", "second", "value"), [
    (_versioned(250, updated="2026-11-24T09:00:00Z"), _versioned(80, updated="2026-11-24T10:00:00Z"), 80),
    (_versioned(80, updated="2026-11-24T10:00:00Z"), _versioned(250, updated="2026-11-24T09:00:00Z"), 80),
    (_versioned(250, version="2"), _versioned(80, version="10"), 80),  # numbers, not text: 10 > 2
])
def test_conflicting_copies_the_later_version_wins_and_is_reported(first, second, value):
    parsed, problems = parse_resources([first, second], PATIENT)
    assert [cast(Any, r).valueQuantity.value for r in parsed] == [value]
    assert len(problems) == 1 and "Observation/plt-1 was sent twice with different content" in problems[0]


def test_conflicting_copies_without_versions_keep_the_first_and_say_so():
    parsed, problems = parse_resources([_versioned(250), _versioned(80)], PATIENT)
    assert [cast(Any, r).valueQuantity.value for r in parsed] == [250]
    assert "no version to tell which is current" in problems[0] and "review this record by hand" in problems[0]


def test_operation_outcome_is_reported_not_parsed_as_data():
    parsed, problems = parse_resources([raw("operationoutcome.json"), raw("observation-platelets-80.json")], PATIENT)
    assert [r.get_resource_type() for r in parsed] == ["Observation"]
    assert len(problems) == 1 and "Search parameter 'code' is not supported" in problems[0]


def test_informational_operation_outcome_is_not_a_problem():
    info = {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational",
                                                           "diagnostics": "3 results"}]}
    assert parse_resources([info], PATIENT) == ([], [])


def test_resources_the_checks_never_read_are_not_parsed_or_reported():
    glucose = {**observation("2345-7", 5.4, "mmol/L", oid="glu"), "foo": "bad but irrelevant"}
    stopped = {"resourceType": "MedicationRequest", "id": "old", "status": "stopped", "intent": "order", "junk": 1}
    parsed, problems = parse_resources([glucose, stopped], PATIENT)
    assert parsed == [] and problems == []


def test_with_now_only_results_down_to_the_newest_usable_final_are_parsed():
    history = [observation("777-3", 200 + i, "10*3/uL", oid=f"p{i}", when=f"2026-11-{i + 1:02d}T08:00:00Z") for i in range(20)]
    future = observation("777-3", 10, "10*3/uL", oid="future", when="2026-12-01T08:00:00Z")
    no_value = {**observation("777-3", None, None, oid="clotted", when="2026-11-24T09:00:00Z"),
                "dataAbsentReason": {"text": "specimen clotted"}}
    parsed, problems = parse_resources([*history, future, no_value], PATIENT, now=NOW)
    # The newest has no value: the parse goes on to the newest with one (p19); the future one is not read.
    assert {r.id for r in parsed} == {"clotted", "p19"} and problems == []


def test_pruning_by_now_gives_the_same_facts_as_parsing_everything():
    from fhir_mappings import build_facts

    history = []
    for i in range(60):
        loinc = ("777-3", "751-8", "1920-8", "8302-2", "29463-7")[i % 5]
        unit = {"777-3": "10*3/uL", "751-8": "10*3/uL", "1920-8": "U/L", "8302-2": "cm", "29463-7": "kg"}[loinc]
        status = "preliminary" if i % 7 == 0 else "final"
        when = f"2026-{1 + (i * 7) % 12:02d}-{1 + (i * 5) % 28:02d}T08:00:00Z"
        history.append(observation(loinc, 100 + i, unit, oid=f"h{i}", status=status, when=when))
    history.append(observation("777-3", 50, "10*3/uL", oid="tie", when="2026-12-01T08:00:00Z"))
    full = build_facts(parse_resources(history, PATIENT)[0], [], PATIENT, NOW)
    pruned = build_facts(parse_resources(history, PATIENT, now=NOW)[0], [], PATIENT, NOW)
    assert full == pruned and set(full.labs) == {"platelets", "neutrophils", "ast", "height", "weight"}


# --- only the elements the mappings read are validated

def _facts(raws, patient_id):
    from fhir_mappings import build_facts

    parsed, problems = parse_resources(raws, patient_id, now=NOW, record=True)
    return build_facts(parsed, [], patient_id, NOW, problems=problems)


def test_every_element_read_exists_in_its_r4b_model():
    from fhir_mappings.reading import model_class

    for rtype, elements in READ_ELEMENTS.items():
        assert set(elements) <= set(model_class(rtype).model_fields), rtype


def test_ehr_export_observation_reads_its_value_and_passes_over_the_rest():
    export = raw("observation-platelets-80-ehr-export.json")
    assert {"text", "meta", "identifier", "performer", "note"} <= set(export)
    facts = _facts([export], PATIENT)
    assert facts.problems == () and facts.labs["platelets"].value == 80_000


def test_a_resource_with_a_modifier_extension_is_not_used_and_is_reported():
    """FHIR R4 §2.21.0.3: a modifier extension may change what a resource means."""
    negated = {**observation("777-3", 80, "10*3/uL", oid="neg"), "modifierExtension": [
        {"url": "http://example.org/fhir/StructureDefinition/negated", "valueBoolean": True}]}
    parsed, problems = parse_resources([negated], PATIENT, record=True)
    assert parsed == []
    assert "Observation/neg carries a modifier extension" in problems[0] and "negated" in problems[0]


@pytest.mark.parametrize("data", [
    {k: v for k, v in observation("777-3", 40, "10*3/uL", oid="nostatus").items() if k != "status"},
    {"resourceType": "MedicationRequest", "id": "nostatus", "intent": "order", "subject": {"reference": f"Patient/{PATIENT}"},
     "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6135"}]}},
])
def test_a_record_resource_without_its_required_status_is_reported_not_skipped(data):
    _parsed, problems = parse_resources([data], PATIENT, now=NOW, record=True)
    assert len(problems) == 1 and "/nostatus has no status, so whether it is current cannot be told" in problems[0]
