"""Parsing: one bad resource does not sink the rest; no other patient's data; duplicates once."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from scripts.fhir_server import read_bundle
from fhir_mappings.resources import UNREAD_ELEMENTS, parse_resource, parse_resources, resources_from_bundle
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
    ({**observation("777-3", 80, "10*3/uL", oid="bad"), "foo": 1}, ["Observation/bad", "foo"]),
    ({**observation("777-3", 80, "10*3/uL", oid="bad"), "effectiveDateTime": "yesterday"}, ["Observation/bad", "effectiveDateTime"]),
    ({"resourceType": "Nonsense", "id": "n1"}, ["Nonsense/n1", "not a FHIR R4 resource type"]),
    ({"id": "x"}, ["no resourceType"]),
    ("a string", ["not a FHIR resource"]),
])
def test_unparseable_resource_gets_one_short_sentence(data, words):
    resource, problem = parse_resource(data)
    assert resource is None
    assert all(w in problem for w in words) and len(problem) < 250 and "Traceback" not in problem


def test_problem_does_not_echo_a_huge_input():
    huge = {**observation("777-3", 80, "10*3/uL", oid="big"), "effectiveDateTime": "x" * 100_000}
    _, problem = parse_resource(huge)
    assert len(problem) < 250


def test_one_bad_resource_does_not_sink_the_rest():
    good = observation("777-3", 80, "10*3/uL", oid="good")
    bad = {**observation("751-8", 1.2, "10*3/uL", oid="bad"), "foo": 1}
    parsed, problems = parse_resources([bad, good], PATIENT)
    assert [r.id for r in parsed] == ["good"]
    assert len(problems) == 1 and problems[0].startswith("Observation/bad")


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


def test_with_now_only_the_newest_usable_result_per_analyte_is_parsed():
    history = [observation("777-3", 200 + i, "10*3/uL", oid=f"p{i}", when=f"2026-11-{i + 1:02d}T08:00:00Z") for i in range(20)]
    future = observation("777-3", 10, "10*3/uL", oid="future", when="2026-12-01T08:00:00Z")
    broken_newest = {**observation("777-3", 5, "10*3/uL", oid="broken", when="2026-11-24T09:00:00Z"), "foo": 1}
    parsed, problems = parse_resources([*history, future, broken_newest], PATIENT, now=NOW)
    assert {r.id for r in parsed} == {"future", "p19"}
    assert len(problems) == 1 and "Observation/broken" in problems[0]


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


# --- slim parsing of the record (elements no mapping reads are dropped first)

def _facts(raws, patient_id, slim):
    from fhir_mappings import build_facts

    parsed, problems = parse_resources(raws, patient_id, now=NOW, slim=slim)
    return build_facts(parsed, [], patient_id, NOW, problems=problems)


_PATIENT_BUNDLES = sorted(
    p for p in (Path(__file__).parents[1] / "fixtures" / "patients").glob("*.json")
    if json.loads(p.read_text()).get("resourceType") == "Bundle")


@pytest.mark.parametrize("path", _PATIENT_BUNDLES, ids=lambda p: p.stem)
def test_slim_parsing_gives_the_same_facts_for_every_fixture_patient(path):
    raws = resources_from_bundle(read_bundle(path, NOW))  # {{now-21d}} dates rendered against NOW
    patient_id = next(r["id"] for r in raws if r["resourceType"] == "Patient")
    # Record mode also skips medications that name no known drug: no check reads those.
    whole = _facts(raws, patient_id, slim=False)
    whole = dataclasses.replace(whole, medications=tuple(m for m in whole.medications if m.drugs))
    assert _facts(raws, patient_id, slim=True) == whole


def test_ehr_export_observation_gives_the_same_lab_slim_or_whole():
    export = raw("observation-platelets-80-ehr-export.json")
    assert {"text", "meta", "identifier", "performer", "note"} <= UNREAD_ELEMENTS & set(export)
    slim, whole = _facts([export], PATIENT, slim=True), _facts([export], PATIENT, slim=False)
    assert slim.labs == whole.labs and slim.labs["platelets"].value == 80_000


def test_malformed_unread_element_is_ignored_only_when_slim():
    bad = {**observation("777-3", 80, "10*3/uL", oid="bad-meta"), "meta": {"lastUpdated": "not a date"}}
    slim, whole = _facts([bad], PATIENT, slim=True), _facts([bad], PATIENT, slim=False)
    assert slim.problems == () and slim.labs["platelets"].value == 80_000
    assert any("Observation/bad-meta" in p for p in whole.problems) and "platelets" not in whole.labs


def test_modifier_extension_is_never_dropped():
    assert "modifierExtension" not in UNREAD_ELEMENTS
    parsed, _ = parse_resources([{**observation("777-3", 80, "10*3/uL"), "modifierExtension": [
        {"url": "http://example.org/fhir/StructureDefinition/negated", "valueBoolean": True}]}], PATIENT, slim=True)
    assert parsed[0].modifierExtension[0].valueBoolean is True
