"""The result that counts per analyte, in one canonical unit.

Which result counts [README, "Which result counts"]:
- the newest *final* result (final, amended, corrected) whose value can be
  read exactly is the analyte's value; when a newer final result has no value
  (dataAbsentReason, an unknown unit, an unreadable element), the older one is
  used and the newer one is named, so nothing is dropped in silence;
- a *preliminary* (or registered) result newer than that final one is kept
  beside it: a rule fires on it when it crosses a threshold, and says so;
- a value the lab reported only as a bound ("<20", ``comparator`` ">") keeps
  its comparator, so a rule uses it only when the bound settles the threshold.

An unknown unit is not a number: the value becomes None with a reason, so the
rules say "cannot verify" instead of guessing (codes.md, unit guard).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .codes import ANALYTE_BY_LOINC, CODES, LOINC, SNOMED, canonical_system
from .dates import period_time, to_utc
from .facts import LabValue
from .reading import unreadable_elements
from .units import implausible, quantity_to_canonical

USABLE_STATUS = frozenset({"final", "amended", "corrected"})
PRELIMINARY_STATUS = frozenset({"preliminary", "registered"})
# Results dated a little after "now" are the EHR's clock running ahead of ours,
# not results from the future (a project judgment, not a clinical threshold).
CLOCK_SKEW = timedelta(minutes=5)
_OLDEST = datetime.min.replace(tzinfo=UTC)

COMPARATORS = ("<=", ">=", "<", ">")
_SYMBOLS = {"\u2264": "<=", "\u2265": ">="}
# "<20", "> 1000", "<2.0 10*3/uL", "\u2264 5 U/L": a comparator, a number (a dot for decimals;
# "1,500" is ambiguous between a thousands separator and a decimal comma and is not read), a unit.
_QUALIFIED = re.compile(r"^\s*(<=|>=|<|>)?\s*(\d+(?:\.\d+)?)\s*(\S.*?)?\s*$")

# Who a reference range applies to: administrative gender (HL7) and SNOMED CT sex findings.
_MALE = frozenset({"male", "248153007"})
_FEMALE = frozenset({"female", "248152002"})
_AGE_UNITS_YEARS = {"a": 1.0, "yr": 1.0, "year": 1.0, "years": 1.0, "mo": 1 / 12, "month": 1 / 12,
                    "months": 1 / 12, "wk": 7 / 365.25, "d": 1 / 365.25}


@dataclass(frozen=True)
class Patient:
    """What a reference range may depend on."""

    birth_date: str | None = None
    sex: str | None = None  # FHIR administrative gender


def effective_time(obs: Any) -> datetime | None:
    """When the result applies: effectiveDateTime, effectivePeriod end (or start), effectiveInstant, then issued."""
    return (
        to_utc(obs.effectiveDateTime)
        or period_time(obs.effectivePeriod)
        or to_utc(getattr(obs, "effectiveInstant", None))
        or to_utc(obs.issued)
    )


def loinc_of(obs: Any, wanted: Any = ANALYTE_BY_LOINC) -> str | None:
    """The first LOINC code of the Observation that is in ``wanted`` (else the first LOINC code)."""
    first: str | None = None
    for coding in (obs.code.coding if obs.code else None) or []:
        if coding.code and canonical_system(coding.system) == LOINC:
            code: str = coding.code
            if code in wanted:
                return code
            first = first or code
    return first


def _age_years(patient: Patient, when: datetime) -> float | None:
    if not patient.birth_date:
        return None
    try:
        born = date.fromisoformat(patient.birth_date[:10]) if len(patient.birth_date) >= len("YYYY-MM-DD") else None
    except ValueError:
        return None
    return None if born is None else (when.date() - born).days / 365.25


def _in_years(quantity: Any) -> float | None:
    if quantity is None or quantity.value is None:
        return None
    factor = _AGE_UNITS_YEARS.get((quantity.code or quantity.unit or "a").strip())
    return None if factor is None else float(quantity.value) * factor


def _fits(reference: Any, patient: Patient, age: float | None) -> bool | None:
    """True/False when the range names who it applies to and the patient fits or not; None when general."""
    specific = False
    if reference.age is not None:
        specific = True
        low, high = _in_years(reference.age.low), _in_years(reference.age.high)
        if age is None or (low is not None and age < low) or (high is not None and age > high):
            return False
    codes = {c.code for concept in reference.appliesTo or [] for c in concept.coding or []
             if c.code and canonical_system(c.system) in (None, SNOMED, "http://hl7.org/fhir/administrative-gender")}
    sexed = codes & (_MALE | _FEMALE)
    if sexed:
        specific = True
        wanted = _MALE if patient.sex == "male" else _FEMALE if patient.sex == "female" else frozenset()
        if not sexed & wanted:
            return False
    return True if specific else None


def _uln(obs: Any, canonical: str, value_unit: Any, patient: Patient, when: datetime | None
         ) -> tuple[float | None, str | None]:
    """The lab's upper limit of normal in ``canonical``, and a note when the choice needs saying.

    One range: its ``high``. Several: the one whose ``age``/``appliesTo`` fits
    the patient (general ranges when none names the patient), and among those
    the lowest ``high``, the conservative choice: a lower ULN makes a raised
    value a larger multiple of it. A range without a unit takes the value's.
    """
    ranges = []
    for reference in obs.referenceRange or []:
        high = reference.high
        if high is None or high.value is None:
            continue
        converted, _ = quantity_to_canonical(float(high.value), high, canonical)
        if converted is None and not (high.code or high.unit) and value_unit is not None:
            converted, _ = quantity_to_canonical(float(high.value), value_unit, canonical)
        if converted is not None:
            ranges.append((converted, reference))
    if not ranges:
        return None, None
    if len(ranges) == 1:
        return ranges[0][0], None
    age = _age_years(patient, when) if when else None
    fitting = [(uln, r) for uln, r in ranges if _fits(r, patient, age) is True]
    general = [(uln, r) for uln, r in ranges if _fits(r, patient, age) is None]
    chosen = fitting or general or ranges
    uln = min(u for u, _ in chosen)
    if fitting:
        note = f"of {len(ranges)} reference ranges, the one for this patient's age/sex was used"
    elif general:
        note = f"of {len(ranges)} reference ranges, the general one was used"
    else:
        note = f"of {len(ranges)} reference ranges none names this patient: the lowest upper limit was used"
    return uln, note


def _qualified_string(text: str) -> tuple[str | None, float, str | None] | None:
    """("<", 20.0, "10*3/uL") from "<20 10*3/uL"; None when the text is not a (bounded) number."""
    for symbol, comparator in _SYMBOLS.items():
        text = text.replace(symbol, comparator)
    match = _QUALIFIED.match(text)
    if not match:
        return None
    comparator, number, unit = match.groups()
    return comparator, float(number), unit


def _range_unit(obs: Any) -> Any | None:
    """The unit the lab gives its reference range in (a Quantity), for a value reported as text."""
    for reference in obs.referenceRange or []:
        for bound in (reference.high, reference.low):
            if bound is not None and (bound.code or bound.unit):
                return bound
    return None


@dataclass(frozen=True)
class _Unit:
    """A unit given as text, shaped like a Quantity for the unit readers."""

    code: str
    unit: str | None = None
    system: str | None = None


def lab_value(obs: Any, analyte: str, code: str, patient: Patient | None = None) -> LabValue:
    """One Observation as a LabValue of ``analyte`` (value None with a problem when unusable)."""
    patient = patient or Patient()
    spec = CODES["analytes"][analyte]
    canonical = spec["unit"]
    ref = f"Observation/{obs.id}" if obs.id else None
    when = effective_time(obs)
    status = obs.status or "unknown"
    unreadable = unreadable_elements(obs)

    def unusable(raw: str, problem: str) -> LabValue:
        return LabValue(analyte, None, canonical, when, raw, code, ref, problem=problem, status=status)

    quantity = obs.valueQuantity
    unit_note = None
    if quantity is not None and quantity.value is not None:
        comparator = quantity.comparator
        number = float(quantity.value)
        value, unit = quantity_to_canonical(number, quantity, canonical)
        raw = f"{comparator or ''}{quantity.value} {quantity.unit or quantity.code or ''}".strip()
        unit_source: Any = quantity
    elif obs.valueString and (parsed := _qualified_string(obs.valueString)) is not None:
        comparator, number, text_unit = parsed
        raw = obs.valueString.strip()
        unit_source = _Unit(text_unit) if text_unit else _range_unit(obs)
        if unit_source is None:
            return unusable(raw, "the result has no unit (reported as text)")
        if not text_unit:
            unit_note = "unit taken from the lab's reference range (the result was reported as text)"
        value, unit = quantity_to_canonical(number, unit_source, canonical)
    else:
        broken = [e for e in ("valueQuantity", "valueString", "valueCodeableConcept") if e in unreadable]
        if broken:
            return unusable("(unreadable)", f"its value could not be read ({unreadable[broken[0]]})")
        shown = obs.valueString or (obs.valueCodeableConcept.text if obs.valueCodeableConcept else None)
        reason = "no numeric value"
        if obs.dataAbsentReason is not None:
            absent = obs.dataAbsentReason.text or next(
                (c.display or c.code for c in obs.dataAbsentReason.coding or [] if c.code), None)
            reason = f"no value ({absent})" if absent else reason
        return unusable(shown or "(no value)", reason)
    if value is None:
        return unusable(raw, f"unknown unit '{unit}'" if unit else "the result has no unit")
    doubt = implausible(value, canonical)
    if doubt:
        return unusable(raw, f"{raw} is {doubt}")
    uln, uln_note = _uln(obs, canonical, unit_source, patient, when)
    if "referenceRange" in unreadable:
        uln_note = f"the lab's reference range could not be read ({unreadable['referenceRange']})"
    defaulted = False
    if uln is None and "default_uln" in spec:
        # Documented default when the lab sends no range [ixabepilone.md, Hepatic impairment; L §2.4].
        uln, defaulted = float(spec["default_uln"]), True
    note = "; ".join(n for n in (unit_note, uln_note) if n) or None
    return LabValue(analyte, value, canonical, when, raw, code, ref, uln=uln, uln_defaulted=defaulted,
                    comparator=comparator, status=status, note=note)


def has_value(obs: Any, analyte: str) -> bool:
    """Would this result give a value for ``analyte`` (a number in a unit we know)?"""
    code = loinc_of(obs) or ""
    return lab_value(obs, analyte, code).value is not None


@dataclass(frozen=True)
class LatestLabs:
    """The result that counts per analyte, and newer preliminary results beside them."""

    final: dict[str, LabValue]
    preliminary: dict[str, LabValue]


def _key(obs: Any) -> tuple[datetime, datetime]:
    return effective_time(obs) or _OLDEST, to_utc(obs.issued) or _OLDEST


def latest_labs(observations: Iterable[Any], now: datetime, patient: Patient | None = None) -> LatestLabs:
    """Per analyte (facts.ANALYTES), in canonical units: the newest final result with a usable
    value (naming a newer one without), and the newest preliminary result newer than it.

    Ties on the effective time go to the most recently issued; results dated
    more than CLOCK_SKEW after ``now`` are ignored; percent neutrophils
    (770-8) and other codes not in codes.json are not read.
    """
    by_analyte: dict[str, list[tuple[tuple[datetime, datetime], Any, str]]] = {}
    horizon = now + CLOCK_SKEW
    for obs in observations:
        if obs.status not in USABLE_STATUS and obs.status not in PRELIMINARY_STATUS:
            continue
        code = loinc_of(obs)
        analyte = ANALYTE_BY_LOINC.get(code or "")
        if analyte is None:
            continue
        key = _key(obs)
        if key[0] > horizon:
            continue
        by_analyte.setdefault(analyte, []).append((key, obs, code or ""))
    final: dict[str, LabValue] = {}
    preliminary: dict[str, LabValue] = {}
    for analyte, results in by_analyte.items():
        results.sort(key=lambda r: r[0], reverse=True)  # newest first (stable: first sent wins a tie)
        newest_unusable: LabValue | None = None
        newest_preliminary: LabValue | None = None
        chosen: LabValue | None = None
        for _, obs, code in results:
            value = lab_value(obs, analyte, code, patient)
            if obs.status in PRELIMINARY_STATUS:
                if newest_preliminary is None and value.value is not None:
                    newest_preliminary = value
                continue
            if value.value is None:
                newest_unusable = newest_unusable or value
                continue
            chosen = value
            break
        if chosen is not None and newest_unusable is not None:
            chosen = replace(chosen, newer_unusable=newest_unusable)
        elif chosen is None:
            chosen = newest_unusable  # nothing usable: the newest result, with its problem
        if chosen is not None:
            final[analyte] = chosen
        if newest_preliminary is not None and (chosen is None or _key_of(newest_preliminary) > _key_of(chosen)):
            preliminary[analyte] = newest_preliminary
    return LatestLabs(final, preliminary)


def _key_of(lab: LabValue) -> datetime:
    return lab.effective or _OLDEST
