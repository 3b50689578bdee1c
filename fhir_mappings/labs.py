"""The latest usable result per analyte, in one canonical unit.

An unknown unit is not a number: the value becomes None with a reason, so
the rules say "cannot verify" instead of guessing (codes.md, unit guard). The
latest result wins even when it cannot be used: an older normal value must
not stand in for a newer one we cannot read.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from .codes import ANALYTE_BY_LOINC, CODES, LOINC
from .dates import period_time, to_utc
from .facts import LabValue
from .units import implausible, to_canonical, unit_of

USABLE_STATUS = frozenset({"final", "amended", "corrected"})
# Results dated a little after "now" are the EHR's clock running ahead of ours,
# not results from the future (a project judgment, not a clinical threshold).
CLOCK_SKEW = timedelta(minutes=5)
_OLDEST = datetime.min.replace(tzinfo=timezone.utc)


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
    first = None
    for coding in (obs.code.coding if obs.code else None) or []:
        if coding.system == LOINC and coding.code:
            if coding.code in wanted:
                return coding.code
            first = first or coding.code
    return first


def _uln(obs: Any, canonical: str, value_unit: str) -> float | None:
    """The lab's own upper limit of normal, converted; a range without a unit takes the value's."""
    for reference in obs.referenceRange or []:
        high = reference.high
        if high is None or high.value is None:
            continue
        converted = to_canonical(float(high.value), unit_of(high) or value_unit, canonical)
        if converted is not None:
            return converted
    return None


def lab_value(obs: Any, analyte: str, code: str) -> LabValue:
    """One Observation as a LabValue of ``analyte`` (value None with a problem when unusable)."""
    spec = CODES["analytes"][analyte]
    canonical = spec["unit"]
    ref = f"Observation/{obs.id}" if obs.id else None
    when = effective_time(obs)
    quantity = obs.valueQuantity
    if quantity is None or quantity.value is None:
        shown = obs.valueString or (obs.valueCodeableConcept.text if obs.valueCodeableConcept else None)
        reason = "no numeric value"
        if obs.dataAbsentReason is not None:
            absent = obs.dataAbsentReason.text or next((c.code for c in obs.dataAbsentReason.coding or [] if c.code), None)
            reason = f"no value ({absent})" if absent else reason
        return LabValue(analyte, None, canonical, when, shown or "(no value)", code, ref, problem=reason)
    unit = unit_of(quantity)
    raw = f"{quantity.comparator or ''}{quantity.value} {quantity.unit or quantity.code or ''}".strip()
    value = to_canonical(float(quantity.value), unit, canonical)
    if value is None:
        return LabValue(analyte, None, canonical, when, raw, code, ref, problem=f"unknown unit '{unit}'")
    doubt = implausible(value, canonical)
    if doubt:
        return LabValue(analyte, None, canonical, when, raw, code, ref, problem=f"{raw} is {doubt}")
    uln = _uln(obs, canonical, unit)
    defaulted = False
    if uln is None and "default_uln" in spec:
        # Documented default when the lab sends no range [ixabepilone.md, Hepatic impairment; L §2.4].
        uln, defaulted = float(spec["default_uln"]), True
    return LabValue(analyte, value, canonical, when, raw, code, ref, uln=uln, uln_defaulted=defaulted)


def latest_labs(observations: Iterable[Any], now: datetime) -> dict[str, LabValue]:
    """Latest final/amended/corrected result per analyte (facts.ANALYTES), in canonical units.

    Ties on the effective time go to the most recently issued; results dated
    more than CLOCK_SKEW after ``now`` are ignored; percent neutrophils
    (770-8) and other codes not in codes.json are not read.
    """
    best: dict[str, tuple[tuple[datetime, datetime], Any, str]] = {}
    horizon = now + CLOCK_SKEW
    for obs in observations:
        if obs.status not in USABLE_STATUS:
            continue
        code = loinc_of(obs)
        analyte = ANALYTE_BY_LOINC.get(code or "")
        if analyte is None:
            continue
        when = effective_time(obs) or _OLDEST
        if when > horizon:
            continue
        key = (when, to_utc(obs.issued) or _OLDEST)
        if analyte not in best or key > best[analyte][0]:
            best[analyte] = (key, obs, code)
    return {analyte: lab_value(obs, analyte, code) for analyte, (_, obs, code) in best.items()}
