"""Raw FHIR R4 JSON to R4B models, one resource at a time.

One bad resource must not sink the rest, and another patient's resource must
never be mixed in: both are dropped and reported in one sentence each.

Parsing (pydantic validation) is most of the cost of a large record, so
resources the mappings never read are not parsed at all: Observations without
a LOINC code of codes.json or with a status that is not final, Conditions,
Procedures and Immunizations without one of our codes, finished orders,
medications coded and named as no drug of drugs.json. Given
``now``, only the newest usable result per lab/vital analyte is parsed (older
ones cannot change the facts). A malformed resource we would not have read
is therefore not reported either: it cannot change a check.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from .codes import (
    ANALYTE_BY_LOINC, CONDITION_SNOMED, CVX, ICD10CM, LIVE_VACCINE_CVX, LOINC, OBSERVATION_LOINC,
    RADIOTHERAPY_SNOMED, SNOMED, cvx_key, icd10_kinds,
)
from .dates import parse_fhir_datetime
from .drugs import may_name_known_drug
from .labs import CLOCK_SKEW, USABLE_STATUS

__all__ = ["Resource", "parse_resource", "parse_resources", "resources_from_bundle"]

_ALL_CONDITION_SNOMED = frozenset().union(*CONDITION_SNOMED.values())
# Orders and statements in these states can never be a current medication or a draft.
_FINISHED_REQUEST = frozenset({"completed", "stopped", "cancelled", "entered-in-error"})
_CURRENT_STATEMENT = frozenset({"active", "intended"})
# Ended courses in the record still matter for a while: a strong CYP3A4 inhibitor stopped within a week,
# an ixabepilone cycle given within 3 weeks (issue 12 items 4 and 6). Kept when they name a drug we know.
_ENDED_COURSE = frozenset({"completed", "stopped"})
_OLDEST = datetime.min.replace(tzinfo=timezone.utc)
_MAX_PROBLEM = 200
# Top-level elements of record resources that no mapping reads. Validating
# them was a large part of parsing (a Narrative, identifiers, performers,
# notes); dropping them first cannot change a fact, and a malformed one
# cannot change a check, so it is not reported either. Never applied to draft
# orders: those are echoed back in suggestions and must stay whole.
# modifierExtension is kept: it can change what a resource means.
UNREAD_ELEMENTS = frozenset({
    "text", "meta", "implicitRules", "language", "extension", "identifier",
    "basedOn", "partOf", "category", "encounter", "performer", "recorder", "asserter", "requester",
    "informationSource", "reasonCode", "reasonReference", "note", "interpretation", "method",
    "specimen", "device", "bodySite", "hasMember", "derivedFrom", "insurance",
    "substitution", "supportingInformation", "location", "lotNumber", "manufacturer", "site",
    "protocolApplied", "reportOrigin", "education", "fundingSource", "name", "telecom", "address",
    "contact", "communication", "generalPractitioner", "managingOrganization", "photo", "link",
})


def resources_from_bundle(bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The resource dicts of a Bundle's entries (no ``entry``, entries without a resource: skipped)."""
    if not isinstance(bundle, Mapping):
        return []
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return []
    return [e["resource"] for e in entries if isinstance(e, Mapping) and isinstance(e.get("resource"), Mapping)]


def _label(raw: Mapping[str, Any]) -> str:
    rtype = raw.get("resourceType")
    rid = raw.get("id")
    rtype = rtype if isinstance(rtype, str) and rtype.isalnum() and len(rtype) < 60 else "resource"
    rid = rid if isinstance(rid, str) and len(rid) <= 64 else "(no id)"
    return f"{rtype}/{rid}"


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def parse_resource(raw: Any) -> tuple[Resource | None, str | None]:
    """One R4 JSON resource as its R4B model, or None and one sentence saying what was wrong."""
    if not isinstance(raw, Mapping):
        return None, f"an entry is not a FHIR resource (a JSON {type(raw).__name__}, not an object)"
    label = _label(raw)
    rtype = raw.get("resourceType")
    if not isinstance(rtype, str):
        return None, f"{label} has no resourceType."
    try:
        model = get_fhir_model_class(rtype)
    except (KeyError, ValueError):  # fhir.resources raises ValueError for unknown types
        return None, f"{label}: '{_short(rtype, 40)}' is not a FHIR R4 resource type."
    try:
        return model.model_validate(dict(raw)), None
    except ValidationError as error:
        errors = error.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__") or "resource"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return None, f"{label} is not valid FHIR R4: {_short(where, 60)}: {_short(first.get('msg', 'invalid')).rstrip('.')}{more}."
    except (ValueError, TypeError, RecursionError) as error:
        return None, f"{label} is not valid FHIR R4: {_short(type(error).__name__)}."


def _reference(raw: Mapping[str, Any]) -> str | None:
    for key in ("subject", "patient"):
        value = raw.get(key)
        if isinstance(value, Mapping) and isinstance(value.get("reference"), str):
            return value["reference"]
    return None


def _names_other_subject(reference: str, patient_id: str) -> str | None:
    """What the reference names when it is not our patient, else None.

    "Patient/p1", ".../fhir/Patient/p1" and "Patient/p1/_history/2" are our
    patient; contained ("#x") and urn:uuid references cannot be resolved here
    and are kept.
    """
    if reference.startswith("#") or reference.startswith("urn:"):
        return None
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) < 2:
        return None
    rtype, rid = parts[-2], parts[-1]
    if rtype == "Patient" and rid == patient_id:
        return None
    return f"{rtype}/{rid}"


def _codings(concept: Any) -> list[Mapping[str, Any]]:
    if not isinstance(concept, Mapping) or not isinstance(concept.get("coding"), list):
        return []
    return [c for c in concept["coding"] if isinstance(c, Mapping) and isinstance(c.get("code"), str)]


def _codes(concept: Any, system: str) -> list[str]:
    return [c["code"] for c in _codings(concept) if c.get("system") == system]


def _raw_time(raw: Mapping[str, Any]) -> datetime | None:
    """labs.effective_time on the raw dict (same precedence)."""
    for key in ("effectiveDateTime",):
        if isinstance(raw.get(key), str):
            return parse_fhir_datetime(raw[key])
    period = raw.get("effectivePeriod")
    if isinstance(period, Mapping):
        for key in ("end", "start"):
            if isinstance(period.get(key), str):
                return parse_fhir_datetime(period[key])
    for key in ("effectiveInstant", "issued"):
        if isinstance(raw.get(key), str):
            return parse_fhir_datetime(raw[key])
    return None


def _lab_analyte(raw: Mapping[str, Any]) -> str | None:
    for code in _codes(raw.get("code"), LOINC):
        if code in ANALYTE_BY_LOINC:
            return ANALYTE_BY_LOINC[code]
    return None


def _names_medication(raw: Mapping[str, Any]) -> bool:
    return bool(raw.get("medicationCodeableConcept") or raw.get("medicationReference"))


def _may_matter(raw: Mapping[str, Any]) -> bool:
    """A record medication that names no drug we know cannot change a check: not parsed.

    A medicationReference is always kept (the Medication it points at decides),
    and so is an order for a live vaccine (CVX), which the live-vaccine check reads.
    """
    if raw.get("medicationReference"):
        return True
    concept = raw.get("medicationCodeableConcept")
    if any(cvx_key(c) in LIVE_VACCINE_CVX for c in _codes(concept, CVX)):
        return True
    return may_name_known_drug(concept)


def _wanted(raw: Mapping[str, Any], record: bool) -> bool:
    """Could the mappings read this resource at all? Decided on the raw JSON, before parsing.

    Draft orders (``record`` False) are all parsed: they are few, and each is the clinician's.
    """
    rtype = raw.get("resourceType")
    status = raw.get("status")
    if status is not None and not isinstance(status, str):
        return True  # not a code: parse it, so the parser reports it (an array is unhashable in a set test)
    if rtype == "Observation":
        return raw.get("status") in USABLE_STATUS and any(
            c in OBSERVATION_LOINC for c in _codes(raw.get("code"), LOINC))
    if rtype == "Condition":
        code = raw.get("code")
        return any(c in _ALL_CONDITION_SNOMED for c in _codes(code, SNOMED)) or any(
            icd10_kinds(c) for c in _codes(code, ICD10CM))
    if rtype == "Procedure":
        return any(c in RADIOTHERAPY_SNOMED for c in _codes(raw.get("code"), SNOMED))
    if rtype == "Immunization":
        return any(cvx_key(c) in LIVE_VACCINE_CVX for c in _codes(raw.get("vaccineCode"), CVX))
    if rtype in ("MedicationRequest", "MedicationStatement"):
        # An order naming no medication (medication[x] is required) has nothing to check: skipped, not an error.
        return (_medication_status_read(rtype, raw.get("status")) and _names_medication(raw)
                and (not record or _may_matter(raw)))
    return True


def _medication_status_read(rtype: str, status: Any) -> bool:
    """Is a medication in this status read at all: current ones, and ended courses (completed, stopped)."""
    if status in _ENDED_COURSE:
        return True
    if rtype == "MedicationRequest":
        return status not in _FINISHED_REQUEST
    return status in _CURRENT_STATEMENT


def _outcome_problem(raw: Mapping[str, Any]) -> str | None:
    """An OperationOutcome in the data as one sentence, unless it is only informational."""
    issues = [i for i in raw.get("issue") or [] if isinstance(i, Mapping)]
    serious = [i for i in issues if i.get("severity") in ("fatal", "error", "warning")]
    if issues and not serious:
        return None
    texts = []
    for issue in serious or issues:
        details = issue.get("details") if isinstance(issue.get("details"), Mapping) else {}
        text = issue.get("diagnostics") or details.get("text") or issue.get("code") or "no details"
        texts.append(_short(str(text), 120))
    return _short(f"The EHR returned an OperationOutcome instead of data: {'; '.join(texts) or 'no details'}.", _MAX_PROBLEM)


class _Parser:
    """Parses raw resources for one patient, collecting the parsed models and the problems."""

    def __init__(self, patient_id: str, slim: bool = False) -> None:
        self.patient_id = patient_id
        self.slim = slim
        self.parsed: list[Resource] = []
        self.problems: list[str] = []

    def take(self, raw: Mapping[str, Any]) -> bool:
        """Parse and keep ``raw`` when it is valid and about our patient; True when kept."""
        label = _label(raw)
        if raw.get("resourceType") == "Patient":
            if isinstance(raw.get("id"), str) and raw["id"] != self.patient_id:
                self.problems.append(f"{label} was left out: it is another patient, not the patient in context.")
                return False
            other = None
        else:
            reference = _reference(raw)
            other = _names_other_subject(reference, self.patient_id) if reference else None
        if other:
            whose = "another patient" if other.startswith("Patient/") else "something other than the patient in context"
            self.problems.append(f"{label} was left out: it belongs to {whose} ({_short(other, 80)}).")
            return False
        if self.slim:
            raw = {key: value for key, value in raw.items() if key not in UNREAD_ELEMENTS}
        resource, problem = parse_resource(raw)
        if resource is None:
            self.problems.append(problem or f"{label} could not be read.")
            return False
        self.parsed.append(resource)
        return True


def parse_resources(
    raws: Iterable[Any], patient_id: str, now: datetime | None = None, *, slim: bool = False
) -> tuple[list[Resource], list[str]]:
    """Parse each resource on its own; (parsed resources, one problem sentence per resource left out).

    The same ``Type/id`` twice counts once (the first copy); a resource whose
    subject/patient names another patient is dropped and reported; an
    OperationOutcome is reported with its diagnostics, never parsed as data.
    With ``now``, lab and vital results older than the newest usable one per
    analyte (not after ``now``) are skipped unparsed. With ``slim``, the
    :data:`UNREAD_ELEMENTS` of each resource are dropped before parsing (for
    the record, never for draft orders).
    """
    parser = _Parser(patient_id, slim)
    seen: set[str] = set()
    labs: dict[str, list[tuple[tuple[datetime, datetime], int, Mapping[str, Any]]]] = {}
    for position, raw in enumerate(raws):
        if not isinstance(raw, Mapping):
            _, problem = parse_resource(raw)
            parser.problems.append(problem or "an entry is not a FHIR resource.")
            continue
        rtype, rid = raw.get("resourceType"), raw.get("id")
        if rtype == "OperationOutcome":
            problem = _outcome_problem(raw)
            if problem:
                parser.problems.append(problem)
            continue
        if isinstance(rtype, str) and isinstance(rid, str):
            key = f"{rtype}/{rid}"
            if key in seen:
                continue
            seen.add(key)
        if not _wanted(raw, record=slim):
            continue
        analyte = _lab_analyte(raw) if now is not None and rtype == "Observation" else None
        if analyte is None:
            parser.take(raw)
            continue
        when = _raw_time(raw) or _OLDEST
        issued = parse_fhir_datetime(raw["issued"]) if isinstance(raw.get("issued"), str) else None
        labs.setdefault(analyte, []).append(((when, issued or _OLDEST), position, raw))
    if now is not None:
        horizon = now + CLOCK_SKEW
        for candidates in labs.values():
            _take_newest(parser, candidates, horizon)
    return parser.parsed, parser.problems


def _take_newest(parser: _Parser, candidates: list[tuple[tuple[datetime, datetime], int, Mapping[str, Any]]],
                 horizon: datetime) -> None:
    """Parse results newest first until one is kept at or before ``horizon`` (and its exact ties)."""
    candidates.sort(key=lambda c: (c[0], -c[1]), reverse=True)
    kept_key = None
    for key, _, raw in candidates:
        if kept_key is not None and key != kept_key:
            break
        if parser.take(raw) and key[0] <= horizon:
            kept_key = kept_key or key
