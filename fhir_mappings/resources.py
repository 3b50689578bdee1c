"""Raw FHIR R4 JSON to R4B models, one resource at a time.

One bad resource must not sink the rest, and another patient's resource must
never be mixed in: both are dropped and reported in one sentence each. Inside
a resource, only the elements the mappings read are validated
(:mod:`fhir_mappings.reading`): one that cannot be read is named on the
check-unavailable card with the checks it weakens, and the rest of the
resource is still used.

Parsing (pydantic validation) is most of the cost of a large record, so
resources the mappings never read are not parsed at all: Observations without
a LOINC code of codes.json or with a status that is neither final nor
preliminary, Conditions, Procedures and Immunizations without one of our
codes, finished orders, medications coded and named as no drug of drugs.json.
Given ``now``, per lab/vital analyte only the results down to the newest one
with a usable final value are parsed (older ones cannot change the facts).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.resource import Resource

from .codes import (
    ANALYTE_BY_LOINC,
    CONDITION_SNOMED,
    CVX,
    ICD10CM,
    LIVE_VACCINE_CVX,
    LOINC,
    OBSERVATION_LOINC,
    RADIOTHERAPY_SNOMED,
    SNOMED,
    canonical_system,
    cvx_key,
    icd10_kinds,
)
from .dates import parse_fhir_datetime
from .drugs import may_name_known_drug
from .jsonlike import ARRAY_TYPES, OBJECT_TYPES, nested_deeper_than, to_python
from .labs import CLOCK_SKEW, PRELIMINARY_STATUS, USABLE_STATUS, has_value
from .reading import model_class, read_resource, short_text, unreadable_elements
from .references import split_reference

__all__ = ["Resource", "parse_resource", "parse_resources", "resources_from_bundle"]

_ALL_CONDITION_SNOMED = frozenset().union(*CONDITION_SNOMED.values())
# Orders and statements in these states can never be a current medication or a draft.
_FINISHED_REQUEST = frozenset({"completed", "stopped", "cancelled", "entered-in-error"})
_CURRENT_STATEMENT = frozenset({"active", "intended"})
# Ended courses in the record still matter for a while: a strong CYP3A4 inhibitor stopped within a week,
# an ixabepilone cycle given within 3 weeks (issue 12 items 4 and 6). Kept when they name a drug we know.
_ENDED_COURSE = frozenset({"completed", "stopped"})
_OLDEST = datetime.min.replace(tzinfo=UTC)
_MAX_PROBLEM = 240

# What each resource type feeds, for the sentence that names an element we could not read.
WEAKENS: dict[str, str] = {
    "Patient": "the choice of age- and sex-specific reference ranges",
    "MedicationRequest": "the interaction, capecitabine, premedication and live-vaccine checks",
    "MedicationStatement": "the interaction, capecitabine and premedication checks",
    "Medication": "the interaction checks",
    "Observation": "the lab, vital and pregnancy checks",
    "Condition": "the pregnancy, breastfeeding, liver-disease and neuropathy checks",
    "AllergyIntolerance": "the hypersensitivity check",
    "Procedure": "the radiation-recall check",
    "Immunization": "the live-vaccine check",
}
# Elements whose loss a mapping reports itself, in its own words (a lab's value on the
# lab's line; a draft order's dosage on the dose check): not reported twice.
_REPORTED_BY_MAPPING = frozenset({
    ("Observation", "valueQuantity"), ("Observation", "valueString"), ("Observation", "valueCodeableConcept"),
    ("Observation", "referenceRange"),
})
_REPORTED_FOR_DRAFTS = frozenset({("MedicationRequest", "dosageInstruction")})
# Record resources whose status (1..1 in R4) decides whether they count at all.
_STATUS_REQUIRED = frozenset({"Observation", "MedicationRequest", "MedicationStatement", "Procedure", "Immunization"})


def resources_from_bundle(bundle: object) -> list[dict[str, Any]]:
    """The resource dicts of a Bundle's entries (no ``entry``, entries without a resource: skipped).

    A Bundle without ``type`` (the CDS Hooks sandbox sends its draft orders so) is read all the same.
    """
    if not isinstance(bundle, OBJECT_TYPES):
        return []
    entries = bundle.get("entry")
    if isinstance(entries, OBJECT_TYPES):
        entries = [entries]  # one entry sent as an object
    if not isinstance(entries, ARRAY_TYPES):
        return []
    return [e["resource"] for e in entries
            if isinstance(e, OBJECT_TYPES) and isinstance(e.get("resource"), OBJECT_TYPES)]


_MAX_TYPE_NAME = 60  # longer than any R4 resource type: not one, so not echoed
_MAX_ID = 64  # FHIR R4 datatype "id"


def _label(raw: Mapping[str, Any]) -> str:
    rtype = raw.get("resourceType")
    rid = raw.get("id")
    rtype = rtype if isinstance(rtype, str) and rtype.isalnum() and len(rtype) < _MAX_TYPE_NAME else "resource"
    rid = rid if isinstance(rid, str) and len(rid) <= _MAX_ID else "(no id)"
    return f"{rtype}/{rid}"


def parse_resource(raw: Any) -> tuple[Resource | None, str | None]:
    """One R4 JSON resource as its R4B model (the elements we read), or None and why.

    A valid resource type that no check reads gives (None, None): it is passed over.
    """
    if not isinstance(raw, OBJECT_TYPES):
        return None, f"an entry is not a FHIR resource (a JSON {type(raw).__name__}, not an object)"
    label = _label(raw)
    rtype = raw.get("resourceType")
    if not isinstance(rtype, str):
        return None, f"{label} has no resourceType."
    if model_class(rtype) is None:
        return None, f"{label}: '{short_text(rtype, 40)}' is not a FHIR R4 resource type."
    return read_resource(raw), None


def element_problems(resource: Resource, label: str, *, draft: bool = False) -> list[str]:
    """One sentence per element of ``resource`` that could not be read, naming what it weakens."""
    rtype = resource.get_resource_type()
    out = []
    for element, why in unreadable_elements(resource).items():
        if (rtype, element) in _REPORTED_BY_MAPPING or (draft and (rtype, element) in _REPORTED_FOR_DRAFTS):
            continue
        weakens = "the checks of this draft order" if draft else WEAKENS.get(rtype, "the checks")
        out.append(short_text(f"{label}: its {element} is not valid FHIR R4 ({why}); {weakens} could not use it.",
                          _MAX_PROBLEM))
    return out


def _reference(raw: Mapping[str, Any]) -> str | None:
    for key in ("subject", "patient"):
        value = raw.get(key)
        if isinstance(value, OBJECT_TYPES) and isinstance(reference := value.get("reference"), str):
            return reference
    return None


def _names_other_subject(reference: str, patient_id: str) -> str | None:
    """What the reference names when it is not our patient, else None.

    "Patient/p1", ".../fhir/Patient/p1" and "Patient/p1/_history/2" are our
    patient; contained ("#x") and urn:uuid references cannot be resolved here
    and are kept.
    """
    if reference.startswith(("#", "urn:")):
        return None
    target = split_reference(reference)
    if target is None:
        return None
    rtype, rid = target
    if rtype == "Patient" and rid == patient_id:
        return None
    return f"{rtype}/{rid}"


def _codes(concept: Any, system: str) -> list[str]:
    """The codes of ``system`` (canonical URI or an alias of it) in a raw CodeableConcept.

    Decided on raw JSON for every resource of a record, so kept to plain dict and list
    checks; a ``coding`` sent as one object counts as a list of one, as the reader takes it.
    """
    if not isinstance(concept, OBJECT_TYPES):
        return []
    codings = concept.get("coding")
    if isinstance(codings, OBJECT_TYPES):
        codings = [codings]
    elif not isinstance(codings, ARRAY_TYPES):
        return []
    out = []
    for coding in codings:
        if isinstance(coding, OBJECT_TYPES):
            code, named = coding.get("code"), coding.get("system")
            if isinstance(code, str) and isinstance(named, str) and (
                    named == system or canonical_system(named) == system):
                out.append(code)
    return out


def _raw_time(raw: Mapping[str, Any]) -> datetime | None:
    """labs.effective_time on the raw dict (same precedence)."""
    for key in ("effectiveDateTime",):
        if isinstance(raw.get(key), str):
            return parse_fhir_datetime(raw[key])
    period = raw.get("effectivePeriod")
    if isinstance(period, OBJECT_TYPES):
        for key in ("end", "start"):
            if isinstance(period.get(key), str):
                return parse_fhir_datetime(period[key])
    for key in ("effectiveInstant", "issued"):
        if isinstance(raw.get(key), str):
            return parse_fhir_datetime(raw[key])
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
        return _observation_wanted(status, _codes(raw.get("code"), LOINC))
    return _other_wanted(raw, rtype, status, record)


def _observation_wanted(status: str | None, codes: list[str]) -> bool:
    """An Observation with one of our LOINC codes, final (or preliminary, for a lab analyte)."""
    if status is None:  # status is required: parsed so that its absence is reported
        return any(c in OBSERVATION_LOINC for c in codes)
    if status in PRELIMINARY_STATUS:  # a preliminary lab result can fire a rule; other kinds wait for final
        return any(c in ANALYTE_BY_LOINC for c in codes)
    return status in USABLE_STATUS and any(c in OBSERVATION_LOINC for c in codes)


def _other_wanted(raw: Mapping[str, Any], rtype: Any, status: Any, record: bool) -> bool:
    """Everything but Observations: :func:`_wanted`."""
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
        return (_medication_status_read(rtype, status) and _names_medication(raw)
                and (not record or _may_matter(raw)))
    return True


def _medication_status_read(rtype: str, status: Any) -> bool:
    """Is a medication in this status read at all: current ones, ended courses (completed, stopped),
    and one with no status, which is parsed so that the missing status is reported."""
    if status is None or status in _ENDED_COURSE:
        return True
    if rtype == "MedicationRequest":
        return status not in _FINISHED_REQUEST
    return status in _CURRENT_STATEMENT


def _outcome_problem(raw: Mapping[str, Any]) -> str | None:
    """An OperationOutcome in the data as one sentence, unless it is only informational."""
    raw = to_python(raw)
    issues = [i for i in raw.get("issue") or [] if isinstance(i, Mapping)]
    serious = [i for i in issues if i.get("severity") in ("fatal", "error", "warning")]
    if issues and not serious:
        return None
    texts = []
    for issue in serious or issues:
        details = details if isinstance(details := issue.get("details"), Mapping) else {}
        text = issue.get("diagnostics") or details.get("text") or issue.get("code") or "no details"
        texts.append(short_text(str(text), 120))
    return short_text(f"The EHR returned an OperationOutcome instead of data: {'; '.join(texts) or 'no details'}.",
                  _MAX_PROBLEM)


class _Parser:
    """Parses raw resources for one patient, collecting the parsed models and the problems."""

    def __init__(self, patient_id: str, record: bool = False, max_depth: int | None = None) -> None:
        self.patient_id = patient_id
        self.record = record
        self.max_depth = max_depth
        self.parsed: list[Resource] = []
        self.problems: list[str] = []

    def take(self, raw: Mapping[str, Any]) -> Resource | None:
        """Parse and keep ``raw`` when it is a resource we read and about our patient."""
        label = _label(raw)
        if raw.get("resourceType") == "Patient":
            if isinstance(raw.get("id"), str) and raw["id"] != self.patient_id:
                self.problems.append(f"{label} was left out: it is another patient, not the patient in context.")
                return None
            other = None
        else:
            reference = _reference(raw)
            other = _names_other_subject(reference, self.patient_id) if reference else None
        if other:
            whose = "another patient" if other.startswith("Patient/") else "something other than the patient in context"
            self.problems.append(f"{label} was left out: it belongs to {whose} ({short_text(other, 80)}).")
            return None
        if modifiers := _modifier_urls(raw):
            # FHIR R4 §2.21.0.3: a modifier extension changes what the resource means; one we do not
            # understand means we cannot know what it says, so it is not used, and that is said.
            self.problems.append(short_text(f"{label} carries a modifier extension this service does not understand "
                                        f"({modifiers}): it was not used; review it by hand.", _MAX_PROBLEM))
            return None
        raw = to_python(raw)  # only a resource that is read is turned into Python
        if self.max_depth is not None and nested_deeper_than(raw, self.max_depth):
            self.problems.append(f"{label} is nested deeper than {self.max_depth} levels (CDS_MAX_JSON_DEPTH): "
                                 "it was not read.")
            return None
        resource, problem = parse_resource(raw)
        if problem:
            self.problems.append(problem)
        if resource is None:
            return None
        self.problems.extend(element_problems(resource, label, draft=not self.record))
        if (self.record and resource.get_resource_type() in _STATUS_REQUIRED
                and getattr(resource, "status", None) is None
                and "status" not in unreadable_elements(resource)):
            self.problems.append(f"{label} has no status, so whether it is current cannot be told; "
                                 f"{WEAKENS[resource.get_resource_type()]} could not use it.")
        self.parsed.append(resource)
        return resource


def _modifier_urls(raw: Mapping[str, Any]) -> str:
    """The urls of a resource's top-level modifier extensions, or "" when it has none."""
    found = to_python(raw.get("modifierExtension"))
    if not found:
        return ""
    items = found if isinstance(found, list) else [found]
    return ", ".join(str(e.get("url"))[:80] if isinstance(e, Mapping) else "?" for e in items)


def _version(raw: Mapping[str, Any]) -> tuple[datetime, tuple[int, str]] | None:
    """How recent a copy is: meta.lastUpdated, then meta.versionId; None when it says neither."""
    meta = raw.get("meta")
    if not isinstance(meta, OBJECT_TYPES):
        return None
    updated = parse_fhir_datetime(meta["lastUpdated"]) if isinstance(meta.get("lastUpdated"), str) else None
    version = meta.get("versionId") if isinstance(meta.get("versionId"), str) else None
    if updated is None and version is None:
        return None
    number = (int(version), "") if version and version.isdigit() else (-1, version or "")
    return updated or _OLDEST, number


def _same(a: Any, b: Any) -> bool:
    """Do two copies say the same? (Compared as Python; one nested past the interpreter's
    recursion limit counts as different, so the conflict is reported, not raised.)"""
    try:
        return bool(to_python(a) == to_python(b))
    except RecursionError:
        return False


def _deduplicated(raws: Iterable[Any]) -> tuple[list[Any], list[str]]:
    """One copy per ``Type/id``: the later version (meta.lastUpdated, else versionId) when two
    copies differ, named on the card; with no version to tell them apart, the first copy."""
    out: list[Any] = []
    where: dict[tuple[str, str], int] = {}
    problems: list[str] = []
    for raw in raws:
        rtype = raw.get("resourceType") if isinstance(raw, OBJECT_TYPES) else None
        rid = raw.get("id") if isinstance(raw, OBJECT_TYPES) else None
        if not (isinstance(rtype, str) and isinstance(rid, str)):
            out.append(raw)
            continue
        key = (rtype, rid)
        if key not in where:
            where[key] = len(out)
            out.append(raw)
            continue
        kept = out[where[key]]
        if kept is raw or _same(kept, raw):
            continue
        old, new = _version(kept), _version(raw)
        if old is not None and new is not None and new > old:
            out[where[key]] = raw
            problems.append(f"{_label(raw)} was sent twice with different content: the later version "
                            "(meta.lastUpdated, versionId) was used.")
        elif old is not None and new is not None and new < old:
            problems.append(f"{_label(raw)} was sent twice with different content: the later version "
                            "(meta.lastUpdated, versionId) was used.")
        else:
            problems.append(f"{_label(raw)} was sent twice with different content and no version to tell "
                            "which is current: the first copy was used; review this record by hand.")
    return out, problems


def parse_resources(
    raws: Iterable[Any], patient_id: str, now: datetime | None = None, *, record: bool = False,
    max_depth: int | None = None,
) -> tuple[list[Resource], list[str]]:
    """Parse each resource on its own; (parsed resources, one problem sentence per thing not read).

    The same ``Type/id`` twice counts once (see :func:`_deduplicated`); a
    resource whose subject/patient names another patient is dropped and
    reported; an OperationOutcome is reported with its diagnostics, never
    parsed as data; an element we read that is not valid R4 is named. With
    ``record`` (the patient's record, not the draft orders), resources that
    cannot change a check are skipped unparsed, and with ``now`` so are lab
    and vital results older than the newest usable final one per analyte.
    ``raws`` may be simdjson proxies (fhir_mappings.jsonlike): only the
    resources that are read become Python, each checked against ``max_depth``.
    """
    parser = _Parser(patient_id, record, max_depth)
    unique, parser.problems = _deduplicated(raws)
    labs: dict[str, list[tuple[tuple[datetime, datetime], int, Mapping[str, Any]]]] = {}
    for position, raw in enumerate(unique):
        if not isinstance(raw, OBJECT_TYPES):
            _, problem = parse_resource(raw)
            parser.problems.append(problem or "an entry is not a FHIR resource.")
            continue
        rtype = raw.get("resourceType")
        if rtype == "OperationOutcome":
            problem = _outcome_problem(raw)
            if problem:
                parser.problems.append(problem)
            continue
        if rtype == "Observation":
            status = raw.get("status")
            codes = _codes(raw.get("code"), LOINC)
            if (isinstance(status, str) or status is None) and not _observation_wanted(status, codes):
                continue
            analyte = next((ANALYTE_BY_LOINC[c] for c in codes if c in ANALYTE_BY_LOINC), None) if now else None
        elif not _wanted(raw, record=record):
            continue
        else:
            analyte = None
        if analyte is None:
            parser.take(raw)
            continue
        when = _raw_time(raw) or _OLDEST
        issued = parse_fhir_datetime(raw["issued"]) if isinstance(raw.get("issued"), str) else None
        labs.setdefault(analyte, []).append(((when, issued or _OLDEST), position, raw))
    if now is not None:
        horizon = now + CLOCK_SKEW
        for analyte, candidates in labs.items():
            _take_newest(parser, analyte, candidates, horizon)
    return parser.parsed, parser.problems


def _take_newest(parser: _Parser, analyte: str,
                 candidates: list[tuple[tuple[datetime, datetime], int, Mapping[str, Any]]],
                 horizon: datetime) -> None:
    """Parse results newest first, down to the newest final one with a usable value (and its exact
    ties); results dated after ``horizon`` are not read (labs.latest_labs would skip them)."""
    candidates.sort(key=lambda c: (c[0], -c[1]), reverse=True)
    kept_key = None
    for key, _, raw in candidates:
        if kept_key is not None and key != kept_key:
            break
        if key[0] > horizon:
            continue
        resource = parser.take(raw)
        if isinstance(resource, Observation) and resource.status in USABLE_STATUS and has_value(resource, analyte):
            kept_key = key
