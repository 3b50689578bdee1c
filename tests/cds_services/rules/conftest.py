"""Builders for hand-made patient facts with a fixed clock.

``clean_facts`` is a patient for whom every check passes: a fresh CBC and
liver panel within normal limits, current height and weight, H1 and H2
premedication drafted, a 40 mg/m2 ixabepilone draft. Each test changes only
what it is about, with ``dataclasses.replace`` or the helpers below.
"""
from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cds_services.knowledge import Knowledge, load_knowledge
from fhir_mappings.facts import Allergy, Dose, DrugUse, Evidence, LabValue, PatientFacts

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
PATIENT = "pat-1"

UNITS = {
    "neutrophils": ("cells/mm3", "751-8"),
    "wbc": ("cells/mm3", "6690-2"),
    "platelets": ("cells/mm3", "777-3"),
    "ast": ("U/L", "1920-8"),
    "alt": ("U/L", "1742-6"),
    "bilirubin": ("mg/dL", "1975-2"),
    "height": ("cm", "8302-2"),
    "weight": ("kg", "29463-7"),
    "temperature": ("Cel", "8310-5"),
}
ULN = {"ast": 40.0, "alt": 40.0, "bilirubin": 1.2}


def ago(days: float = 0, hours: float = 0) -> datetime:
    return NOW - timedelta(days=days, hours=hours)


def lab(
    analyte: str,
    value: float | None,
    *,
    days: float = 1,
    uln: float | None = None,
    uln_defaulted: bool = False,
    problem: str | None = None,
    effective: datetime | str | None = "auto",
) -> LabValue:
    unit, code = UNITS[analyte]
    if uln is None and analyte in ULN and not uln_defaulted:
        uln = ULN[analyte]
    if uln_defaulted and uln is None:
        uln = ULN[analyte]
    when = ago(days) if effective == "auto" else effective
    return LabValue(
        analyte=analyte,
        value=value,
        unit=unit,
        effective=when,  # type: ignore[arg-type]
        raw=f"{value} {unit}" if value is not None else "3000 10*3/uL",
        code=code,
        ref=f"Observation/{analyte}-1",
        uln=uln,
        uln_defaulted=uln_defaulted,
        problem=problem,
    )


def ixabepilone_resource(mg_per_m2: float | None = 40, mg: float | None = None) -> dict[str, Any]:
    quantity = (
        {"value": mg_per_m2, "unit": "mg/m2", "system": "http://unitsofmeasure.org", "code": "mg/m2"}
        if mg is None
        else {"value": mg, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
    )
    return {
        "resourceType": "MedicationRequest",
        "id": "ixa-1",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "1726271",
                    "display": "ixabepilone 45 MG Injection",
                }
            ]
        },
        "subject": {"reference": f"Patient/{PATIENT}"},
        "dosageInstruction": [
            {"text": "40 mg/m2 IV over 3 hours", "doseAndRate": [{"doseQuantity": quantity}]}
        ],
    }


def ixabepilone_order(mg_per_m2: float | None = 40, mg: float | None = None, *, ref: str = "MedicationRequest/ixa-1",
                      resource: bool = True, dose: Dose | str | None = "auto") -> DrugUse:
    if dose == "auto":
        dose = Dose(raw=f"{mg} mg" if mg is not None else f"{mg_per_m2} mg/m2", mg=mg,
                    mg_per_m2=None if mg is not None else mg_per_m2)
    return DrugUse(
        drugs=frozenset({"ixabepilone"}),
        display="ixabepilone 45 MG Injection",
        origin="draft",
        status="draft",
        ref=ref,
        date=NOW,
        dose=dose,  # type: ignore[arg-type]
        resource=ixabepilone_resource(mg_per_m2, mg) if resource else None,
    )


def drug(drug_id: str, *, origin: str = "request", display: str | None = None, ref: str | None = None,
         extra: frozenset[str] = frozenset()) -> DrugUse:
    return DrugUse(
        drugs=frozenset({drug_id}) | extra,
        display=display or drug_id,
        origin=origin,
        status="draft" if origin == "draft" else "active",
        ref=ref or f"MedicationRequest/{drug_id}-{origin}",
        date=ago(10),
    )


def evidence(label: str, *, days: float | None = 10, code: str | None = None) -> Evidence:
    return Evidence(label=label, date=ago(days) if days is not None else None, ref="Condition/c-1", code=code)


def allergy(substance: str, *, criticality: str | None = "high", display: str | None = None) -> Allergy:
    return Allergy(substances=frozenset({substance}), display=display or f"Allergy to {substance}",
                   criticality=criticality, ref="AllergyIntolerance/a-1", date=ago(400))


def normal_labs() -> dict[str, LabValue]:
    return {
        "neutrophils": lab("neutrophils", 3200),
        "wbc": lab("wbc", 5600),
        "platelets": lab("platelets", 240000),
        "ast": lab("ast", 28),
        "alt": lab("alt", 31),
        "bilirubin": lab("bilirubin", 0.7),
        "height": lab("height", 165, days=100),
        "weight": lab("weight", 68, days=3),
        "temperature": lab("temperature", 36.8, days=0.1),
    }


def make_facts(**changes: Any) -> PatientFacts:
    order = ixabepilone_order()
    premeds = (
        drug("diphenhydramine", origin="draft", display="diphenhydramine 50 MG Oral Capsule"),
        drug("famotidine", origin="draft", display="famotidine 20 MG Oral Tablet"),
    )
    base = PatientFacts(
        now=NOW,
        patient_id=PATIENT,
        labs=normal_labs(),
        orders=(order,),
        draft_orders=(order, *premeds),
    )
    return dataclasses.replace(base, **changes)


def with_labs(facts: PatientFacts, **labs: LabValue | None) -> PatientFacts:
    merged = dict(facts.labs)
    for key, value in labs.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return dataclasses.replace(facts, labs=merged)


def add_drafts(facts: PatientFacts, *uses: DrugUse) -> PatientFacts:
    return dataclasses.replace(facts, draft_orders=(*facts.draft_orders, *uses))


def add_meds(facts: PatientFacts, *uses: DrugUse) -> PatientFacts:
    return dataclasses.replace(facts, medications=(*facts.medications, *uses))


def codes(findings: list) -> list[str]:
    return [f.rule for f in findings]


def only(findings: list, code: str):
    hits = [f for f in findings if f.rule == code]
    assert len(hits) == 1, f"expected one {code} finding, got {len(hits)}: {[f.summary for f in findings]}"
    return hits[0]


@pytest.fixture(scope="session")
def kb() -> Knowledge:
    return load_knowledge()


@pytest.fixture
def facts() -> PatientFacts:
    return make_facts()
