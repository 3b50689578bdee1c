"""fhir_mappings: units, latest result, unit guards, drug identification, patient isolation."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.observation import Observation

from fhir_mappings import build_facts
from fhir_mappings.drugs import identify_text, drugs_of
from fhir_mappings.labs import latest_labs
from fhir_mappings.resources import parse_resources

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc)


def obs(loinc, value, code, when="2026-11-24T08:30:00Z", status="final", high=None, oid="o1"):
    raw = {"resourceType": "Observation", "id": oid, "status": status,
           "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
           "subject": {"reference": "Patient/p1"}, "effectiveDateTime": when,
           "valueQuantity": {"value": value, "unit": code, "system": "http://unitsofmeasure.org", "code": code}}
    if high is not None:
        raw["referenceRange"] = [{"high": {"value": high, "unit": code, "system": "http://unitsofmeasure.org", "code": code}}]
    return Observation.model_validate(raw)


@pytest.mark.parametrize(("value", "code", "expected"), [
    (80, "10*3/uL", 80_000), (80, "10*9/L", 80_000), (80, "K/uL", 80_000),
    (80_000, "/uL", 80_000), (80_000, "/mm3", 80_000), (80_000, "{cells}/uL", 80_000),
])
def test_platelet_units_to_cells_per_mm3(value, code, expected):
    lab = latest_labs([obs("777-3", value, code)], NOW)["platelets"]
    assert lab.value == pytest.approx(expected) and lab.unit == "cells/mm3"


def test_bilirubin_umol_per_l_to_mg_per_dl_with_lab_uln():
    lab = latest_labs([obs("14631-6", 34.2, "umol/L", high=20.5)], NOW)["bilirubin"]
    assert lab.value == pytest.approx(2.0) and lab.uln == pytest.approx(1.2, abs=0.01)
    assert lab.uln_defaulted is False


def test_missing_reference_range_uses_the_documented_default():
    lab = latest_labs([obs("1920-8", 60, "U/L")], NOW)["ast"]
    assert lab.uln == 40 and lab.uln_defaulted is True


def test_unknown_unit_and_implausible_count_cannot_be_verified():
    assert latest_labs([obs("777-3", 80, "furlongs")], NOW)["platelets"].problem == "unknown unit 'furlongs'"
    anc = latest_labs([obs("751-8", 3000, "10*3/uL")], NOW)["neutrophils"]
    assert anc.value is None and "plausible" in anc.problem


def test_latest_final_result_wins_and_preliminary_is_ignored():
    labs = latest_labs([
        obs("777-3", 250, "10*3/uL", when="2026-11-01T08:00:00Z", oid="old"),
        obs("777-3", 80, "10*3/uL", when="2026-11-24T08:00:00Z", oid="new"),
        obs("777-3", 300, "10*3/uL", when="2026-11-25T08:00:00Z", status="preliminary", oid="prelim"),
    ], NOW)
    assert labs["platelets"].value == 80_000 and labs["platelets"].ref == "Observation/new"


def test_another_patients_resource_is_dropped_and_reported():
    other = obs("777-3", 80, "10*3/uL").model_dump(mode="json", exclude_none=True)
    other["subject"] = {"reference": "Patient/someone-else"}
    parsed, problems = parse_resources([other], "p1")
    assert parsed == [] and "another patient" in problems[0]


def test_unparseable_resource_is_reported_not_fatal():
    good = obs("777-3", 80, "10*3/uL").model_dump(mode="json", exclude_none=True)
    parsed, problems = parse_resources([{"resourceType": "Observation", "id": "bad", "foo": 1}, good], "p1")
    assert len(parsed) == 1 and problems and "Observation/bad" in problems[0]


@pytest.mark.parametrize(("text", "found"), [
    ("IXEMPRA kit 45 mg", {"ixabepilone"}), ("ixabepilone", {"ixabepilone"}),
    ("Ixempraxyl", set()), ("Paxlovid 300 mg/100 mg", {"nirmatrelvir", "ritonavir"}),
])
def test_name_matching_on_word_boundaries(text, found):
    assert set(identify_text(text)) == found


@pytest.mark.parametrize("ndc", ["70020-1910-01", "70020191001"])
def test_ndc_forms_identify_ixabepilone(ndc):
    order = MedicationRequest.model_validate({
        "resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": ndc}]}})
    ids, how, _ = drugs_of(order, {})
    assert ids == {"ixabepilone"} and how == "ndc"


def test_contained_medication_with_ingredient_is_identified():
    order = MedicationRequest.model_validate({
        "resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order",
        "subject": {"reference": "Patient/p1"}, "medicationReference": {"reference": "#med"},
        "contained": [{"resourceType": "Medication", "id": "med", "ingredient": [{"itemCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "337523"}]}}]}]})
    facts = build_facts([], [order], "p1", NOW)
    assert [o.ref for o in facts.orders] == ["MedicationRequest/d1"]


def test_newer_not_pregnant_status_clears_an_older_positive():
    def status(answer, when, oid):
        return Observation.model_validate({
            "resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "82810-3"}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": when,
            "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": answer}]}})
    pregnant = status("77386006", "2026-10-01T00:00:00Z", "a")
    not_pregnant = status("60001007", "2026-11-20T00:00:00Z", "b")
    assert build_facts([pregnant], [], "p1", NOW).pregnancy
    assert build_facts([pregnant, not_pregnant], [], "p1", NOW).pregnancy == ()
