"""Clinical statuses from Conditions, Observations, Procedures, allergies and immunizations.

Only current, positive evidence is returned: a Condition must be active and
not refuted, and a newer "not pregnant" (or "not breastfeeding") answer or a
negative hCG test clears older evidence here, so the rules never have to.
Codes come from ``data/codes.json`` (codes.md).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable

from .codes import (
    CODES, CONDITION_SNOMED, CVX, ICD10CM, LIVE_VACCINE_CVX, RADIOTHERAPY_SNOMED, REPRODUCTIVE_LOINC, SNOMED,
    canonical_system, cvx_key, icd10_kinds,
)
from .dates import period_time, to_utc
from .drugs import identify_concept, identify_text
from .facts import Allergy, Evidence
from .labs import USABLE_STATUS, effective_time, loinc_of

CONDITION_KINDS = tuple(CODES["conditions"])  # pregnancy, breastfeeding, liver_disease, gilbert_syndrome, ...
ACTIVE_CLINICAL = frozenset({"active", "recurrence", "relapse"})
NOT_TRUE = frozenset({"entered-in-error", "refuted"})

_REPRO = CODES["reproductive"]
_PREGNANT = frozenset(_REPRO["pregnancy_status"]["pregnant_answers"])
_NOT_PREGNANT = frozenset(_REPRO["pregnancy_status"]["not_pregnant_answers"])
_BREASTFEEDING = frozenset(_REPRO["breastfeeding_status"]["breastfeeding_answers"])
_NOT_BREASTFEEDING = frozenset(_REPRO["breastfeeding_status"]["not_breastfeeding_answers"])
_HCG = _REPRO["hcg"]
_HCG_POSITIVE = frozenset(_HCG["positive_answers"])
_HCG_NEGATIVE = frozenset(_HCG["negative_answers"])
# Quantitative hCG above this is positive [codes.md, hCG; threshold marked *verify*].
_HCG_POSITIVE_ABOVE = float(_HCG["positive_above_miu_per_ml"])
# A positive test counts as pregnancy evidence for this long [ixabepilone.md, Lab freshness: pregnancy test 7 days].
_HCG_RECENT = timedelta(days=_HCG["recent_days"])
_HCG_UNITS = {"m[IU]/mL": 1.0, "mIU/mL": 1.0, "[IU]/L": 1.0, "IU/L": 1.0, "[IU]/mL": 1000.0}


def _codes(concept: Any, system: str) -> list[str]:
    return [c.code for c in (concept.coding if concept is not None else None) or [] if c.code and canonical_system(c.system) == system]


def _status_codes(concept: Any) -> set[str]:
    return {c.code for c in (concept.coding if concept is not None else None) or [] if c.code}


def _label(concept: Any, fallback: str) -> str:
    if concept is None:
        return fallback
    return concept.text or next((c.display for c in concept.coding or [] if c.display), fallback)


def _ref(resource: Any) -> str | None:
    return f"{resource.get_resource_type()}/{resource.id}" if resource.id else None


def condition_kinds(condition: Any) -> set[str]:
    """Which of our condition kinds a Condition's code falls in (SNOMED exact, ICD-10-CM by range)."""
    kinds = {kind for code in _codes(condition.code, SNOMED) for kind, codes in CONDITION_SNOMED.items() if code in codes}
    for code in _codes(condition.code, ICD10CM):
        kinds |= icd10_kinds(code)
    return kinds


def is_active_condition(condition: Any) -> bool:
    """clinicalStatus active/recurrence/relapse, and not entered-in-error or refuted."""
    if not _status_codes(condition.clinicalStatus) & ACTIVE_CLINICAL:
        return False
    return not _status_codes(condition.verificationStatus) & NOT_TRUE


def condition_evidence(conditions: Iterable[Any]) -> dict[str, list[Evidence]]:
    """Active Conditions per kind (pregnancy, breastfeeding, liver_disease, gilbert_syndrome, diabetes, neuropathy)."""
    out: dict[str, list[Evidence]] = {kind: [] for kind in CONDITION_KINDS}
    for cond in conditions:
        kinds = condition_kinds(cond)
        if not kinds or not is_active_condition(cond):
            continue
        date = (to_utc(cond.onsetDateTime) or period_time(cond.onsetPeriod) or to_utc(cond.recordedDate))
        matched = next(iter(_codes(cond.code, SNOMED) + _codes(cond.code, ICD10CM)), None)
        evidence = Evidence(_label(cond.code, "Condition"), date, _ref(cond), matched)
        for kind in kinds:
            out[kind].append(evidence)
    return out


def _answers(obs: Any) -> tuple[set[str], str]:
    concept = obs.valueCodeableConcept
    codes = _status_codes(concept)
    text = ((concept.text if concept is not None else None) or obs.valueString or "").strip().lower()
    if concept is not None:
        text = text or " ".join((c.display or "").lower() for c in concept.coding or [])
    return codes, text


def _hcg_verdict(obs: Any) -> bool | None:
    """True positive, False negative, None when the result says neither."""
    codes, text = _answers(obs)
    if codes & _HCG_POSITIVE or text.startswith(("positive", "detected")):
        return True
    if codes & _HCG_NEGATIVE or text.startswith(("negative", "not detected")):
        return False
    quantity = obs.valueQuantity
    if quantity is not None and quantity.value is not None:
        factor = _HCG_UNITS.get((quantity.code or quantity.unit or "").strip())
        if factor is not None and quantity.comparator in (None, "<", "<="):
            return float(quantity.value) * factor > _HCG_POSITIVE_ABOVE
    return None


def reproductive_observations(
    observations: Iterable[Any], now: datetime
) -> tuple[list[Evidence], list[Evidence], list[tuple[datetime, bool]], list[tuple[datetime, bool]]]:
    """(pregnancy evidence, breastfeeding evidence, dated pregnancy verdicts, dated breastfeeding verdicts).

    Verdicts (True = pregnant / breastfeeding) are what clears older evidence:
    see :func:`current`.
    """
    pregnancy: list[Evidence] = []
    breastfeeding: list[Evidence] = []
    pregnant_verdicts: list[tuple[datetime, bool]] = []
    feeding_verdicts: list[tuple[datetime, bool]] = []
    for obs in observations:
        if obs.status not in USABLE_STATUS:
            continue
        code = loinc_of(obs, REPRODUCTIVE_LOINC)
        kind = REPRODUCTIVE_LOINC.get(code or "")
        if kind is None:
            continue
        when = effective_time(obs)
        ref = _ref(obs)
        if kind == "pregnancy_status":
            codes, _ = _answers(obs)
            if codes & _PREGNANT:
                pregnancy.append(Evidence("Pregnancy status: pregnant", when, ref, code))
                if when:
                    pregnant_verdicts.append((when, True))
            elif codes & _NOT_PREGNANT and when:
                pregnant_verdicts.append((when, False))
        elif kind == "hcg":
            verdict = _hcg_verdict(obs)
            if verdict is None or when is None:
                continue
            if verdict and now - when <= _HCG_RECENT:
                pregnancy.append(Evidence("Positive hCG pregnancy test", when, ref, code))
                pregnant_verdicts.append((when, True))
            elif not verdict:
                pregnant_verdicts.append((when, False))
        elif kind == "breastfeeding_status":
            codes, _ = _answers(obs)
            if codes & _BREASTFEEDING:
                breastfeeding.append(Evidence("Breastfeeding status: currently breastfeeding", when, ref, code))
                if when:
                    feeding_verdicts.append((when, True))
            elif codes & _NOT_BREASTFEEDING and when:
                feeding_verdicts.append((when, False))
    return pregnancy, breastfeeding, pregnant_verdicts, feeding_verdicts


def current(evidence: Iterable[Evidence], verdicts: Iterable[tuple[datetime, bool]]) -> tuple[Evidence, ...]:
    """The evidence not cleared by a newer negative verdict.

    Evidence without a date is kept: an active Condition with no onset cannot
    be shown to be older than the negative result, and silence would read as
    "safe".
    """
    negatives = [when for when, positive in verdicts if not positive]
    if not negatives:
        return tuple(evidence)
    newest_negative = max(negatives)
    return tuple(e for e in evidence if e.date is None or e.date > newest_negative)


def allergies(resources: Iterable[Any]) -> list[Allergy]:
    """AllergyIntolerances naming a drug or excipient we know (by code, text or reaction substance)."""
    out = []
    for allergy in resources:
        if _status_codes(allergy.verificationStatus) & NOT_TRUE:
            continue
        if _status_codes(allergy.clinicalStatus) & {"inactive", "resolved"}:
            continue
        ids, _ = identify_concept(allergy.code)
        if allergy.code is not None:
            ids = ids | identify_text(allergy.code.text)
        for reaction in allergy.reaction or []:
            if reaction.substance is not None:
                more, _ = identify_concept(reaction.substance)
                ids = ids | more
        if not ids:
            continue
        display = _label(allergy.code, ", ".join(sorted(ids)))
        date = to_utc(allergy.onsetDateTime) or to_utc(allergy.recordedDate)
        out.append(Allergy(frozenset(ids), display, allergy.criticality, _ref(allergy), date))
    return out


def radiotherapy(procedures: Iterable[Any], now: datetime | None = None) -> list[Evidence]:
    """Radiotherapy Procedures (completed or in progress) with the date they were performed.

    A course still in progress (no end to its period) is dated ``now``: it is
    as recent as radiotherapy gets.
    """
    out = []
    for proc in procedures:
        if proc.status not in ("completed", "in-progress"):
            continue
        matched = [c for c in _codes(proc.code, SNOMED) if c in RADIOTHERAPY_SNOMED]
        if not matched:
            continue
        date = to_utc(proc.performedDateTime) or period_time(proc.performedPeriod)
        label = _label(proc.code, "Radiotherapy")
        ongoing = proc.status == "in-progress" and (proc.performedPeriod is None or proc.performedPeriod.end is None)
        if ongoing and now is not None:
            date, label = now, f"{label} (in progress)"
        out.append(Evidence(label, date, _ref(proc), matched[0]))
    return out


def ordered_live_vaccine(request: Any, medication: Any | None, origin: str) -> Evidence | None:
    """A MedicationRequest for a live vaccine (CVX on the order or on its Medication), else None.

    ``origin`` ("draft order", "active order") goes into the label: an order
    counts whatever its date, because the vaccine is about to be given.
    """
    concept = getattr(request, "medicationCodeableConcept", None)
    if concept is None and medication is not None:
        concept = medication.code
    found = [c for c in _codes(concept, CVX) if cvx_key(c) in LIVE_VACCINE_CVX]
    if not found:
        return None
    return Evidence(f"{_label(concept, 'Live vaccine')} ({origin})", to_utc(request.authoredOn), _ref(request), found[0])


def live_vaccines(immunizations: Iterable[Any]) -> list[Evidence]:
    """Completed Immunizations with a live vaccine (CVX), with the date given."""
    out = []
    for imm in immunizations:
        if imm.status != "completed":
            continue
        found = [c for c in _codes(imm.vaccineCode, CVX) if cvx_key(c) in LIVE_VACCINE_CVX]
        if not found:
            continue
        out.append(Evidence(_label(imm.vaccineCode, "Live vaccine"), to_utc(imm.occurrenceDateTime), _ref(imm), found[0]))
    return out
