"""Clinical statuses from Conditions, Observations, Procedures, allergies and immunizations.

Only current, positive evidence is returned: a Condition must be active, not
refuted and not abated, and a newer "not pregnant" (or "not breastfeeding")
answer, a negative hCG test or a recorded end of pregnancy clears older
evidence here, so the rules never have to. Codes come from ``data/codes.json``
(codes.md; the pregnancy lists cite the eCQM value set they were built from).
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from .codes import (
    CODES,
    CONDITION_SNOMED,
    CVX,
    ICD10CM,
    LIVE_VACCINE_CVX,
    RADIOTHERAPY_SNOMED,
    REPRODUCTIVE_LOINC,
    SNOMED,
    canonical_system,
    concept_text,
    cvx_key,
    icd10_kinds,
)
from .dates import period_time, to_utc
from .drugs import identify_concept, identify_text
from .facts import Allergy, Evidence
from .labs import USABLE_STATUS, effective_time, loinc_of
from .references import reference_of

CONDITION_KINDS = tuple(CODES["conditions"])  # pregnancy, pregnancy_ended, breastfeeding, liver_disease, ...
# Not a status of its own: a delivery, abortion or postpartum record ends older pregnancy evidence.
PREGNANCY_ENDED = "pregnancy_ended"
ACTIVE_CLINICAL = frozenset({"active", "recurrence", "relapse"})
NOT_TRUE = frozenset({"entered-in-error", "refuted"})

_REPRO = CODES["reproductive"]
_PREGNANT = frozenset(_REPRO["pregnancy_status"]["pregnant_answers"])
_NOT_PREGNANT = frozenset(_REPRO["pregnancy_status"]["not_pregnant_answers"])
_PREGNANT_TEXT = frozenset(_REPRO["pregnancy_status"]["pregnant_text"])
_NOT_PREGNANT_TEXT = frozenset(_REPRO["pregnancy_status"]["not_pregnant_text"])
_BREASTFEEDING = frozenset(_REPRO["breastfeeding_status"]["breastfeeding_answers"])
_NOT_BREASTFEEDING = frozenset(_REPRO["breastfeeding_status"]["not_breastfeeding_answers"])
_HCG = _REPRO["hcg"]
_HCG_POSITIVE = frozenset(_HCG["positive_answers"])
_HCG_NEGATIVE = frozenset(_HCG["negative_answers"])
# Quantitative hCG above this is positive [codes.md, hCG; threshold marked *verify*].
_HCG_POSITIVE_ABOVE = float(_HCG["positive_above_miu_per_ml"])
# A positive test stays pregnancy evidence this long unless cleared [ixabepilone.md, Lab freshness: about 10 months].
_HCG_POSITIVE_LASTS = timedelta(days=_HCG["positive_evidence_days"])
_ANAPHYLAXIS = frozenset(CODES["allergy"]["anaphylaxis_snomed"])
_ANAPHYLAXIS_WORDS = tuple(CODES["allergy"]["anaphylaxis_words"])
_HCG_UNITS = {"m[IU]/mL": 1.0, "mIU/mL": 1.0, "[IU]/L": 1.0, "IU/L": 1.0, "[IU]/mL": 1000.0}


def _codes(concept: Any, system: str) -> list[str]:
    codings = (concept.coding if concept is not None else None) or []
    return [c.code for c in codings if c.code and canonical_system(c.system) == system]


def _status_codes(concept: Any) -> set[str]:
    return {c.code for c in (concept.coding if concept is not None else None) or [] if c.code}


def condition_kinds(condition: Any) -> set[str]:
    """Which of our condition kinds a Condition's code falls in (SNOMED exact, ICD-10-CM by range)."""
    kinds = {kind for code in _codes(condition.code, SNOMED)
             for kind, codes in CONDITION_SNOMED.items() if code in codes}
    for code in _codes(condition.code, ICD10CM):
        kinds |= icd10_kinds(code)
    return kinds


def is_active_condition(condition: Any) -> bool:
    """clinicalStatus active/recurrence/relapse, and not entered-in-error or refuted."""
    if not _status_codes(condition.clinicalStatus) & ACTIVE_CLINICAL:
        return False
    return not _status_codes(condition.verificationStatus) & NOT_TRUE


def abatement(condition: Any) -> tuple[bool, datetime | None]:
    """(has the Condition abated, when) from abatement[x].

    A date or period is an abatement only once it is reached (``now`` decides
    in :func:`condition_evidence`); an age, range, string or ``true`` says it
    ended without a date we can compare, and counts as ended.
    """
    when = (to_utc(getattr(condition, "abatementDateTime", None))
            or period_time(getattr(condition, "abatementPeriod", None)))
    if when is not None:
        return True, when
    undated = (getattr(condition, "abatementBoolean", None) is True or getattr(condition, "abatementString", None)
               or getattr(condition, "abatementAge", None) is not None
               or getattr(condition, "abatementRange", None) is not None)
    return bool(undated), None


def _onset(cond: Any) -> datetime | None:
    return to_utc(cond.onsetDateTime) or period_time(cond.onsetPeriod) or to_utc(cond.recordedDate)


def condition_evidence(conditions: Iterable[Any], now: datetime | None = None) -> dict[str, list[Evidence]]:
    """Current Conditions per kind (pregnancy, breastfeeding, liver_disease, gilbert_syndrome, diabetes, neuropathy).

    Current: active, not refuted, and not abated by ``now`` (issue 12: a
    resolved condition or one with an abatement in the past does not count).
    ``pregnancy_ended`` is different: delivery, abortion and postpartum
    records, and a pregnancy Condition that resolved or abated, whatever their
    clinical status (only refuted or entered-in-error ones are ignored), each
    dated when the pregnancy ended.
    """
    out: dict[str, list[Evidence]] = {kind: [] for kind in CONDITION_KINDS}
    for cond in conditions:
        kinds = condition_kinds(cond)
        if not kinds or _status_codes(cond.verificationStatus) & NOT_TRUE:
            continue
        matched = next(iter(_codes(cond.code, SNOMED) + _codes(cond.code, ICD10CM)), None)
        label = concept_text(cond.code, "Condition")
        if PREGNANCY_ENDED in kinds:
            out[PREGNANCY_ENDED].append(Evidence(label, _onset(cond), reference_of(cond), matched))
            kinds = kinds - {PREGNANCY_ENDED}
        abated, abated_on = abatement(cond)
        if abated and abated_on is not None and now is not None and abated_on > now:
            abated = False  # an abatement still ahead is not an end yet
        if abated or not is_active_condition(cond):
            if "pregnancy" in kinds and (abated_on or abated):
                ended = abated_on if abated_on is not None else None
                if ended is not None:
                    out[PREGNANCY_ENDED].append(Evidence(f"{label} (ended)", ended, reference_of(cond), matched))
            continue
        evidence = Evidence(label, _onset(cond), reference_of(cond), matched, recorded=to_utc(cond.recordedDate))
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


def _pregnancy_answer(obs: Any) -> bool | None:
    """True pregnant, False not pregnant, None neither: by code, else by the exact plain-text answer."""
    codes, text = _answers(obs)
    if codes & _PREGNANT:
        return True
    if codes & _NOT_PREGNANT:
        return False
    if codes and not text:
        return None
    phrase = " ".join(text.rstrip(".").split())
    if phrase in _PREGNANT_TEXT:
        return True
    if phrase in _NOT_PREGNANT_TEXT:
        return False
    return None


def _hcg_factor(quantity: Any) -> float | None:
    """The factor to mIU/mL of an hCG quantity's unit, None for a unit we do not know."""
    return _HCG_UNITS.get((quantity.code or quantity.unit or "").strip())


def _hcg_range_high(obs: Any) -> float | None:
    """The lab's own upper reference limit for this hCG result, in mIU/mL (None when it gives none)."""
    for reference_range in obs.referenceRange or []:
        high = reference_range.high
        if high is not None and high.value is not None and (factor := _hcg_factor(high)) is not None:
            return float(high.value) * factor
    return None


def _hcg_verdict(obs: Any) -> bool | None:
    """True positive, False negative, None when the result says neither.

    A quantitative result above 25 mIU/mL is positive [codes.md], and so is a
    lower bound above it (">1000"). Not positive is not negative: a value
    between the lab's normal range and that cut-off is equivocal, and a
    negative clears older pregnancy evidence. So a quantitative result is
    negative only at or under the lab's own upper reference limit ("<5 mIU/mL"
    with a range of up to 5). (Observation.interpretation is not among the
    elements read, reading.READ_ELEMENTS: the lab's range says the same.)
    """
    codes, text = _answers(obs)
    if codes & _HCG_POSITIVE or text.startswith(("positive", "detected")):
        return True
    if codes & _HCG_NEGATIVE or text.startswith(("negative", "not detected")):
        return False
    quantity = obs.valueQuantity
    if quantity is None or quantity.value is None or (factor := _hcg_factor(quantity)) is None:
        return None
    value = float(quantity.value) * factor
    if quantity.comparator in (None, ">", ">="):
        if value > _HCG_POSITIVE_ABOVE:
            return True
        if quantity.comparator is not None:
            return None  # at least a bound at or under the cut-off: could be either
    high = _hcg_range_high(obs)
    return False if high is not None and value <= high else None


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
        ref = reference_of(obs)
        if kind == "pregnancy_status":
            answer = _pregnancy_answer(obs)
            if answer:
                pregnancy.append(Evidence("Pregnancy status: pregnant", when, ref, code))
                if when:
                    pregnant_verdicts.append((when, True))
            elif answer is False and when:
                pregnant_verdicts.append((when, False))
        elif kind == "hcg":
            verdict = _hcg_verdict(obs)
            if verdict is None or when is None:
                continue
            if verdict and now - when <= _HCG_POSITIVE_LASTS:
                # A positive test stays evidence until cleared (see current) or about 10 months pass.
                pregnancy.append(Evidence(f"Positive hCG test (LOINC {code})", when, ref, code))
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
    "safe". A Condition recorded after the negative result is newer than it,
    whatever its onset: a pregnancy dated from its first day and recorded weeks
    later, after an early negative test, still counts (issue 12 item 1: a
    negative test clears only older evidence).
    """
    negatives = [when for when, positive in verdicts if not positive]
    if not negatives:
        return tuple(evidence)
    newest_negative = max(negatives)
    return tuple(e for e in evidence if e.date is None or e.date > newest_negative
                 or (e.recorded is not None and e.recorded > newest_negative))


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
        display = concept_text(allergy.code, ", ".join(sorted(ids)))
        date = to_utc(allergy.onsetDateTime) or to_utc(allergy.recordedDate)
        severity, anaphylaxis, reactions = _reaction_facts(allergy.reaction or [])
        out.append(
            Allergy(
                frozenset(ids),
                display,
                allergy.criticality,
                reference_of(allergy),
                date,
                severity=severity,
                anaphylaxis=anaphylaxis,
                reactions=reactions,
            )
        )
    return out


_SEVERITY_RANK = {"mild": 1, "moderate": 2, "severe": 3}


def _reaction_facts(reactions: Iterable[Any]) -> tuple[str | None, bool, tuple[str, ...]]:
    """(worst reaction.severity, any manifestation is anaphylaxis, manifestation labels as recorded)."""
    worst: str | None = None
    anaphylaxis = False
    labels: list[str] = []
    for reaction in reactions:
        severity = getattr(reaction, "severity", None)
        if severity in _SEVERITY_RANK and _SEVERITY_RANK[severity] > _SEVERITY_RANK.get(worst or "", 0):
            worst = severity
        manifestations = getattr(reaction, "manifestation", None) or []
        if not isinstance(manifestations, list):
            manifestations = [manifestations]  # tolerant reading: one object where a list belongs
        for concept in manifestations:
            label = concept_text(concept, "")
            if label:
                labels.append(label)
            words = " ".join([label, *((c.display or "") for c in getattr(concept, "coding", None) or [])]).lower()
            if set(_codes(concept, SNOMED)) & _ANAPHYLAXIS or any(w in words for w in _ANAPHYLAXIS_WORDS):
                anaphylaxis = True
        description = getattr(reaction, "description", None)
        if description and any(w in description.lower() for w in _ANAPHYLAXIS_WORDS):
            anaphylaxis = True
    return worst, anaphylaxis, tuple(dict.fromkeys(labels))


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
        label = concept_text(proc.code, "Radiotherapy")
        ongoing = proc.status == "in-progress" and (proc.performedPeriod is None or proc.performedPeriod.end is None)
        if ongoing and now is not None:
            date, label = now, f"{label} (in progress)"
        out.append(Evidence(label, date, reference_of(proc), matched[0]))
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
    label = f"{concept_text(concept, 'Live vaccine')} ({origin})"
    return Evidence(label, to_utc(request.authoredOn), reference_of(request), found[0])


def live_vaccines(immunizations: Iterable[Any]) -> list[Evidence]:
    """Completed Immunizations with a live vaccine (CVX), with the date given."""
    out = []
    for imm in immunizations:
        if imm.status != "completed":
            continue
        found = [c for c in _codes(imm.vaccineCode, CVX) if cvx_key(c) in LIVE_VACCINE_CVX]
        if not found:
            continue
        label = concept_text(imm.vaccineCode, "Live vaccine")
        out.append(Evidence(label, to_utc(imm.occurrenceDateTime), reference_of(imm), found[0]))
    return out
