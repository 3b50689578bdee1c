"""FHIR R4 resources to plain clinical facts.

Nothing here does I/O or knows about Flask: every function takes parsed
resources (``fhir.resources.R4B`` models) and returns the frozen dataclasses
in :mod:`fhir_mappings.facts`, so the rules can be tested with plain data.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from .drugs import drugs_of, read_dose
from .facts import DrugUse, Evidence, PatientFacts
from .labs import _utc, latest_labs
from .status import allergies, condition_evidence, live_vaccines, radiotherapy, reproductive_observations

_REQUEST_ACTIVE = {"active", "on-hold"}
_STATEMENT_ACTIVE = {"active", "intended"}


def _by_type(resources: Sequence[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for resource in resources:
        out.setdefault(resource.get_resource_type(), []).append(resource)
    return out


def _use(resource: Any, medications: dict[str, Any], origin: str) -> DrugUse:
    ids, how, display = drugs_of(resource, medications)
    rtype = resource.get_resource_type()
    date = _utc(getattr(resource, "authoredOn", None)) or _utc(getattr(resource, "dateAsserted", None))
    return DrugUse(
        drugs=ids,
        display=display or "(unnamed medication)",
        origin=origin,
        status=resource.status,
        ref=f"{rtype}/{resource.id}" if resource.id else None,
        date=date,
        dose=read_dose(resource) if origin == "draft" and rtype == "MedicationRequest" else None,
        matched_by=how,
        resource=resource.model_dump(mode="json", exclude_none=True) if origin == "draft" else None,
    )


def _pregnancy(conditions: list[Evidence], observed: list[Evidence], verdicts: list[tuple[datetime, bool]]) -> tuple[Evidence, ...]:
    """Pregnancy evidence, unless the newest verdict says "not pregnant" after it."""
    evidence = conditions + observed
    negatives = [when for when, pregnant in verdicts if not pregnant]
    if not negatives:
        return tuple(evidence)
    newest_negative = max(negatives)
    return tuple(e for e in evidence if e.date is not None and e.date > newest_negative)


def build_facts(
    resources: Sequence[Any],
    draft_orders: Sequence[Any],
    patient_id: str,
    now: datetime,
    problems: Sequence[str] = (),
) -> PatientFacts:
    record = _by_type(resources)
    medications = {f"Medication/{m.id}": m for m in record.get("Medication", []) if m.id}
    drafts = [
        _use(r, medications, "draft")
        for r in draft_orders
        if r.get_resource_type() == "MedicationRequest"
        and (getattr(r, "medicationCodeableConcept", None) or getattr(r, "medicationReference", None))
    ]
    draft_refs = {d.ref for d in drafts if d.ref}
    active = [
        _use(r, medications, "request")
        for r in record.get("MedicationRequest", [])
        if r.status in _REQUEST_ACTIVE and f"MedicationRequest/{r.id}" not in draft_refs
    ] + [
        _use(r, medications, "statement")
        for r in record.get("MedicationStatement", [])
        if r.status in _STATEMENT_ACTIVE
    ]
    observations = record.get("Observation", [])
    conditions = condition_evidence(record.get("Condition", []))
    pregnant_obs, breastfeeding_obs, verdicts = reproductive_observations(observations, now)
    patient = next(iter(record.get("Patient", [])), None)
    return PatientFacts(
        now=now,
        patient_id=patient_id,
        labs=latest_labs(observations, now),
        orders=tuple(d for d in drafts if "ixabepilone" in d.drugs),
        draft_orders=tuple(drafts),
        medications=tuple(active),
        allergies=tuple(allergies(record.get("AllergyIntolerance", []))),
        pregnancy=_pregnancy(conditions["pregnancy"], pregnant_obs, verdicts),
        breastfeeding=tuple(conditions["breastfeeding"] + breastfeeding_obs),
        liver_disease=tuple(conditions["liver_disease"]),
        gilbert_syndrome=tuple(conditions["gilbert_syndrome"]),
        diabetes=tuple(conditions["diabetes"]),
        neuropathy=tuple(conditions["neuropathy"]),
        radiotherapy=tuple(radiotherapy(record.get("Procedure", []))),
        live_vaccines=tuple(live_vaccines(record.get("Immunization", []))),
        birth_date=str(patient.birthDate) if patient is not None and patient.birthDate else None,
        sex=patient.gender if patient is not None else None,
        problems=tuple(problems),
    )
