"""The patient picture the rules read.

These dataclasses are the contract between ``fhir_mappings`` (which builds
them from FHIR) and ``cds_services.rules`` (which reads them). They hold only
plain values so a rule can be tested with a hand-made instance and a clock.
All datetimes are timezone-aware UTC.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Analyte keys used in PatientFacts.labs. Canonical units per analyte:
#   neutrophils, wbc, platelets: "cells/mm3"
#   ast, alt: "U/L";  bilirubin: "mg/dL"
#   height: "cm";  weight: "kg";  temperature: "Cel"
ANALYTES = (
    "neutrophils",
    "wbc",
    "platelets",
    "ast",
    "alt",
    "bilirubin",
    "height",
    "weight",
    "temperature",
)


# The kinds of record data the checks read, each from one prefetch key of the same name
# (cds_services.catalog): when one cannot be had, PatientFacts.unavailable names it.
DATA_KINDS = (
    "patient", "medicationRequests", "medicationStatements", "labs", "vitals", "reproductive",
    "conditions", "allergies", "procedures", "immunizations",
)


@dataclass(frozen=True)
class LabValue:
    """The latest usable result for one analyte, in its canonical unit.

    ``value`` is None when the latest result cannot be verified (unknown unit,
    physiologically implausible for its unit, no numeric value); ``problem``
    then says why in words a clinician understands. A None value must never
    be read as normal.
    """

    analyte: str
    value: float | None
    unit: str
    effective: datetime | None
    raw: str  # as recorded, e.g. "80 10*3/uL"
    code: str  # the LOINC code that matched
    ref: str | None = None  # "Observation/abc"
    uln: float | None = None  # upper limit of normal, canonical unit
    uln_defaulted: bool = False  # True when uln came from the documented default
    problem: str | None = None
    # "<", "<=", ">", ">=" when the lab reported only a bound: ``value`` is then that bound,
    # never a measurement, and a rule may use it only where the bound settles its threshold.
    comparator: str | None = None
    status: str = "final"  # Observation.status: final, amended, corrected, preliminary, registered
    note: str | None = None  # how the value or its ULN was read, when that needs saying
    # A newer result of the same analyte that had no usable value (this one was used instead).
    newer_unusable: LabValue | None = None

    @property
    def preliminary(self) -> bool:
        return self.status not in ("final", "amended", "corrected")


@dataclass(frozen=True)
class Evidence:
    """One record that supports a clinical status (a Condition, Observation, Procedure...)."""

    label: str  # human-readable, e.g. "Pregnancy (SNOMED 77386006)"
    date: datetime | None = None
    ref: str | None = None  # "Condition/123"
    code: str | None = None  # the code that matched, e.g. a CVX code
    # When the record was written (Condition.recordedDate), if later than ``date``: a pregnancy recorded
    # after a negative test is newer than that test even when its onset is older (issue 12 item 1).
    recorded: datetime | None = None


@dataclass(frozen=True)
class Dose:
    """One dose read from an order's dosageInstruction.

    Exactly one of ``mg`` and ``mg_per_m2`` is set when the dose could be read;
    both are None and ``problem`` says why otherwise. ``kind`` is the
    doseAndRate type when the order says it ("ordered", "calculated"), or
    "range high" for the top of a doseRange.
    """

    raw: str
    mg: float | None = None
    mg_per_m2: float | None = None
    problem: str | None = None
    kind: str | None = None


@dataclass(frozen=True)
class DrugUse:
    """A medication the patient takes or is being ordered.

    ``drugs`` holds the ids of the code table in ``fhir_mappings/data/drugs.json``
    (e.g. "ixabepilone", "capecitabine", "ketoconazole") that the medication
    matched; it is empty for a medication we do not know.
    """

    drugs: frozenset[str]
    display: str
    origin: str  # "draft" (in context.draftOrders), "request" (MedicationRequest), "statement"
    status: str | None = None
    ref: str | None = None  # "MedicationRequest/123"
    date: datetime | None = None
    dose: Dose | None = None
    # The order's own JSON, for ixabepilone draft orders only, so a suggestion can update
    # or replace it (e.g. the same order with a reduced dose).
    resource: Mapping[str, Any] | None = None
    # Every dose the order carries (each doseAndRate entry of each dosageInstruction; drafts only);
    # ``dose`` is the first of them, kept for the suggestions that rewrite the order's dose.
    doses: tuple[Dose, ...] = ()
    # "systemic", "local" (topical, ophthalmic, otic, vaginal, shampoo...) or None when neither route nor
    # dose form says; ``exposure_basis`` says how it was decided, in words for the card.
    exposure: str | None = None
    exposure_basis: str | None = None
    intent: str | None = None  # MedicationRequest.intent (order, plan, proposal...)
    # When the course ended or is due to end: the stop date of a stopped/completed order or statement, or,
    # for an active order, the end of its bounds or supply (a long-open short course); ``ended_basis`` says which.
    ended: datetime | None = None
    ended_basis: str | None = None


@dataclass(frozen=True)
class Allergy:
    """An AllergyIntolerance that names a substance we know."""

    substances: frozenset[str]  # ids from drugs.json, e.g. "cremophor", "paclitaxel"
    display: str
    criticality: str | None = None  # "low" | "high" | "unable-to-assess" | None
    ref: str | None = None
    date: datetime | None = None
    severity: str | None = None  # the worst reaction.severity: "mild" | "moderate" | "severe" | None
    anaphylaxis: bool = False  # a reaction manifestation is anaphylaxis (SNOMED 39579001 or the word)
    reactions: tuple[str, ...] = ()  # manifestations as recorded, for the card


@dataclass(frozen=True)
class PatientFacts:
    """Everything the rules may read about one patient at one moment (``now``)."""

    now: datetime
    patient_id: str
    # Latest result per analyte key (see ANALYTES); a key is absent when no
    # result for it was found at all.
    labs: Mapping[str, LabValue] = field(default_factory=dict)
    # Preliminary (or registered) results newer than the result in ``labs``, per analyte.
    preliminary_labs: Mapping[str, LabValue] = field(default_factory=dict)
    # Ixabepilone orders the hook is acting on (from context.draftOrders).
    orders: tuple[DrugUse, ...] = ()
    # Every draft order in context (ixabepilone ones included).
    draft_orders: tuple[DrugUse, ...] = ()
    # Active/on-hold MedicationRequests (intent order, plan or proposal) and active/intended
    # MedicationStatements from the record (not the drafts).
    medications: tuple[DrugUse, ...] = ()
    # Stopped or completed MedicationRequests and MedicationStatements with the date they ended
    # (``ended``); the rules decide which are recent enough to matter (e.g. a strong inhibitor's washout).
    stopped_medications: tuple[DrugUse, ...] = ()
    allergies: tuple[Allergy, ...] = ()
    # Positive, current evidence only: a "not pregnant" result newer than a
    # pregnancy record clears it, in the mapping, not the rule.
    pregnancy: tuple[Evidence, ...] = ()
    breastfeeding: tuple[Evidence, ...] = ()
    liver_disease: tuple[Evidence, ...] = ()
    gilbert_syndrome: tuple[Evidence, ...] = ()
    diabetes: tuple[Evidence, ...] = ()
    neuropathy: tuple[Evidence, ...] = ()
    radiotherapy: tuple[Evidence, ...] = ()  # with date of the procedure
    live_vaccines: tuple[Evidence, ...] = ()  # given (Immunization), with the date given
    # Live vaccines ordered now: draft orders and active MedicationRequests (label says which).
    ordered_live_vaccines: tuple[Evidence, ...] = ()
    # Resources that could not be read, one sentence each, for the
    # check-unavailable card ("Observation/obs-7: unknown element 'foo'").
    problems: tuple[str, ...] = ()
    # Kinds of record data that could not be had at all (DATA_KINDS -> why): a rule must not
    # read their absence as "none on record".
    unavailable: Mapping[str, str] = field(default_factory=dict)

    def known(self, kind: str) -> bool:
        """True when the record's ``kind`` data (see DATA_KINDS) was read, so its absence means none."""
        return kind not in self.unavailable
    # The CDS hook being answered ("order-select", "order-sign"); None outside a hook call.
    # At order-select the order is still being written, so an unreadable dose is not yet an error.
    hook: str | None = None
