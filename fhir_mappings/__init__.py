"""FHIR R4 resources to plain clinical facts.

Nothing here does I/O or knows about Flask: every function takes parsed
resources (``fhir.resources.R4B`` models) and returns the frozen dataclasses
in :mod:`fhir_mappings.facts`, so the rules can be tested with plain data.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from fhir.resources.R4B.resource import Resource

from .dates import period_time, to_utc
from .drugs import IXABEPILONE, course_end, drugs_of, exposure_of, has_medication, medication_of, read_doses
from .facts import Dose, DrugUse, PatientFacts
from .labs import Patient, latest_labs
from .reading import source_json, unreadable_elements
from .references import reference_of
from .status import (
    PREGNANCY_ENDED,
    allergies,
    condition_evidence,
    current,
    live_vaccines,
    ordered_live_vaccine,
    radiotherapy,
    reproductive_observations,
)

__all__ = ["build_facts"]

# A current medication: an order that is in force [FHIR R4 MedicationRequest.status/intent]. A plan or
# proposal that is active is exposure too (issue 12 item 4); a directive or an option is not a treatment.
_REQUEST_ACTIVE = frozenset({"active", "on-hold"})
_REQUEST_NOT_AN_ORDER = frozenset({"directive", "option"})
_STATEMENT_ACTIVE = frozenset({"active", "intended"})
# A course that has ended: kept with its end date for the washout rules (issue 12 item 4).
_REQUEST_ENDED = frozenset({"stopped", "completed"})
_STATEMENT_ENDED = frozenset({"stopped", "completed"})


def _by_type(resources: Sequence[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for resource in resources:
        out.setdefault(resource.get_resource_type(), []).append(resource)
    return out


def _date(resource: Any) -> datetime | None:
    if resource.get_resource_type() == "MedicationRequest":
        return to_utc(resource.authoredOn)
    return (to_utc(getattr(resource, "effectiveDateTime", None))
            or period_time(getattr(resource, "effectivePeriod", None))
            or to_utc(getattr(resource, "dateAsserted", None)))


def _draft_doses(resource: Any) -> tuple[Dose, ...]:
    """Every dose on the draft order; "cannot verify" with the reason when its dosage is not valid R4."""
    broken = unreadable_elements(resource).get("dosageInstruction")
    if broken:
        return (Dose(raw="(unreadable)", problem=f"its dosageInstruction is not valid FHIR R4 ({broken})"),)
    return tuple(read_doses(resource))


def _use(resource: Any, medications: dict[str, Any], origin: str) -> DrugUse:
    ids, _, display = drugs_of(resource, medications)
    draft = origin == "draft"
    doses = _draft_doses(resource) if draft else ()
    exposure, basis = exposure_of(resource, medication_of(resource, medications)) if ids else (None, None)
    ended, ended_basis = course_end(resource) if ids and not draft else (None, None)
    return DrugUse(
        drugs=ids,
        display=display or "(unnamed medication)",
        origin=origin,
        status=resource.status,
        ref=reference_of(resource),
        date=_date(resource),
        dose=doses[0] if doses else None,
        # Only an ixabepilone draft is ever echoed back (an update suggestion): as the EHR sent it.
        resource=_echo(resource) if draft and IXABEPILONE in ids else None,
        doses=doses,
        exposure=exposure,
        exposure_basis=basis,
        intent=getattr(resource, "intent", None),
        ended=ended,
        ended_basis=ended_basis,
    )


def _echo(resource: Any) -> dict[str, Any]:
    return source_json(resource) or resource.model_dump(mode="json", exclude_none=True)


def _unresolved(resource: Any, use: DrugUse, medications: dict[str, Any]) -> str | None:
    """A record medication we cannot name at all (its Medication is missing): say so, do not guess."""
    reference = getattr(resource, "medicationReference", None)
    if use.drugs or reference is None or reference.display or not reference.reference:
        return None
    if reference.reference.startswith("#") or reference.reference in medications:
        return None
    return (f"{use.ref or resource.get_resource_type()}: its medication {reference.reference} was not found, "
            "so it could not be checked for interactions.")


def build_facts(
    resources: Sequence[Resource],
    draft_orders: Sequence[Resource],
    patient_id: str,
    now: datetime,
    *,
    problems: Sequence[str] = (),
    unavailable: Mapping[str, str] | None = None,
    hook: str | None = None,
) -> PatientFacts:
    """The patient picture at ``now`` from parsed record resources and the hook's draft orders.

    ``resources`` are the record (Patient, MedicationRequest, MedicationStatement,
    Observation, Condition, AllergyIntolerance, Procedure, Immunization,
    Medication); ``draft_orders`` are context.draftOrders. Draft orders that
    are not MedicationRequests, or that name no medication, are left out.
    ``unavailable`` names the kinds of record data (facts.DATA_KINDS) that
    could not be had, and why.
    """
    record = _by_type(resources)
    medications = {f"Medication/{m.id}": m for m in record.get("Medication", []) if m.id}
    mapping_problems: list[str] = []

    drafts = tuple(
        _use(order, medications, "draft")
        for order in draft_orders
        if order.get_resource_type() == "MedicationRequest" and has_medication(order)
    )
    draft_refs = {d.ref for d in drafts if d.ref}
    vaccine_orders = [
        (order, "draft order") for order in draft_orders
        if order.get_resource_type() == "MedicationRequest" and has_medication(order)
    ]

    current_meds: list[DrugUse] = []
    stopped: list[DrugUse] = []
    for rtype, origin, in_force, ended in (("MedicationRequest", "request", _REQUEST_ACTIVE, _REQUEST_ENDED),
                                           ("MedicationStatement", "statement", _STATEMENT_ACTIVE, _STATEMENT_ENDED)):
        for item in record.get(rtype, []):
            if (not has_medication(item) or getattr(item, "intent", None) in _REQUEST_NOT_AN_ORDER
                    or getattr(item, "doNotPerform", None) or reference_of(item) in draft_refs):
                continue
            if item.status in ended:
                if (use := _use(item, medications, origin)).drugs:
                    stopped.append(use)  # dated by the rules (washout, regimen window)
                continue
            if item.status not in in_force:
                continue
            use = _use(item, medications, origin)
            current_meds.append(use)
            if rtype == "MedicationRequest":
                vaccine_orders.append((item, "active order"))
            if problem := _unresolved(item, use, medications):
                mapping_problems.append(problem)

    observations = record.get("Observation", [])
    conditions = condition_evidence(record.get("Condition", []), now)
    pregnant_obs, feeding_obs, pregnant_verdicts, feeding_verdicts = reproductive_observations(observations, now)
    # A recorded delivery, abortion or postpartum state ends older pregnancy evidence as of its date.
    pregnant_verdicts += [(e.date, False) for e in conditions[PREGNANCY_ENDED] if e.date is not None and e.date <= now]
    patients = record.get("Patient", [])
    patient = next((p for p in patients if p.id == patient_id), patients[0] if patients else None)
    birth_date = str(patient.birthDate) if patient is not None and patient.birthDate else None
    sex = patient.gender if patient is not None else None
    labs = latest_labs(observations, now, Patient(birth_date, sex))
    return PatientFacts(
        now=now,
        patient_id=patient_id,
        labs=labs.final,
        preliminary_labs=labs.preliminary,
        orders=tuple(d for d in drafts if IXABEPILONE in d.drugs),
        draft_orders=drafts,
        medications=tuple(current_meds),
        stopped_medications=tuple(stopped),
        allergies=tuple(allergies(record.get("AllergyIntolerance", []))),
        pregnancy=current(conditions["pregnancy"] + pregnant_obs, pregnant_verdicts),
        breastfeeding=current(conditions["breastfeeding"] + feeding_obs, feeding_verdicts),
        liver_disease=tuple(conditions["liver_disease"]),
        gilbert_syndrome=tuple(conditions["gilbert_syndrome"]),
        diabetes=tuple(conditions["diabetes"]),
        neuropathy=tuple(conditions["neuropathy"]),
        radiotherapy=tuple(radiotherapy(record.get("Procedure", []), now)),
        live_vaccines=tuple(live_vaccines(record.get("Immunization", []))),
        ordered_live_vaccines=tuple(
            e for order, origin in vaccine_orders
            if (e := ordered_live_vaccine(order, medication_of(order, medications), origin)) is not None
        ),
        problems=tuple(problems) + tuple(mapping_problems),
        unavailable=dict(unavailable or {}),
        hook=hook,
    )
