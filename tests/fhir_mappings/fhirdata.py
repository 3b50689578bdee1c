"""FHIR fixture loading and small realistic resource builders for the mapping tests."""
from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fhir_mappings.resources import parse_resource

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fhir"
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
PATIENT = "pat-1"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def raw(name: str) -> dict[str, Any]:
    """A fixture file's JSON (a fresh copy each time)."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def model(data: dict[str, Any]) -> Any:
    resource, problem = parse_resource(copy.deepcopy(data))
    assert resource is not None, problem
    return resource


def fixture(name: str) -> Any:
    return model(raw(name))


def observation(loinc: str, value: float | None, unit: str | None, *, oid: str = "o1", status: str = "final",
                when: str | None = "2026-11-24T08:30:00Z", high: float | None = None,
                high_unit: str | None = None, patient: str = PATIENT, **extra: Any) -> dict[str, Any]:
    """A lab/vital Observation as an EHR sends it (UCUM unit in code and unit)."""
    data: dict[str, Any] = {
        "resourceType": "Observation", "id": oid, "status": status,
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": f"Patient/{patient}"},
    }
    if when is not None:
        data["effectiveDateTime"] = when
    if value is not None:
        data["valueQuantity"] = {"value": value}
        if unit is not None:
            data["valueQuantity"].update({"unit": unit, "system": UCUM, "code": unit})
    if high is not None:
        u = high_unit or unit
        data["referenceRange"] = [{"high": {"value": high, "unit": u, "system": UCUM, "code": u}}]
    data.update(extra)
    return data


def medication_request(concept: dict[str, Any] | None = None, *, oid: str = "mr1", status: str = "active",
                       intent: str = "order", **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"resourceType": "MedicationRequest", "id": oid, "status": status, "intent": intent,
                            "subject": {"reference": f"Patient/{PATIENT}"}}
    if concept is not None:
        data["medicationCodeableConcept"] = concept
    data.update(extra)
    return data


def rxnorm(code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": RXNORM, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}
