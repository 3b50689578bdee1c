"""The latest usable result per analyte, in one canonical unit.

An unknown unit is not a number: the value becomes None with a reason, so
the rules say "cannot verify" instead of guessing (codes.md, unit guard).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable

from .codes import ANALYTE_BY_LOINC, CODES, LOINC
from .facts import LabValue

USABLE_STATUS = {"final", "amended", "corrected"}

# UCUM code -> factor to the canonical unit, per canonical unit [codes.md].
_FACTORS: dict[str, dict[str, float]] = {
    "cells/mm3": {"10*3/uL": 1000, "10*3/mm3": 1000, "K/uL": 1000, "10*9/L": 1000,
                  "/uL": 1, "/mm3": 1, "{cells}/uL": 1, "10*6/L": 1},
    "U/L": {"U/L": 1, "IU/L": 1, "[IU]/L": 1},
    "mg/dL": {"mg/dL": 1, "umol/L": 1 / 17.1},
    "cm": {"cm": 1, "m": 100, "[in_i]": 2.54, "in": 2.54},
    "kg": {"kg": 1, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237},
    "Cel": {"Cel": 1},
}
# A count above this, in cells/mm3, is a unit error (e.g. 3000 recorded in 10*3/uL) [codes.md].
_IMPLAUSIBLE_COUNT = 1_000_000


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)


def effective_time(obs: Any) -> datetime | None:
    if obs.effectiveDateTime is not None:
        return _utc(obs.effectiveDateTime)
    period = obs.effectivePeriod
    if period is not None and (period.end or period.start):
        return _utc(period.end or period.start)
    if getattr(obs, "effectiveInstant", None) is not None:
        return _utc(obs.effectiveInstant)
    return _utc(obs.issued)


def convert(value: float, unit: str, canonical: str, analyte: str = "") -> float | None:
    if analyte == "temperature" and unit in ("[degF]", "degF"):
        return (value - 32) * 5 / 9
    factor = _FACTORS[canonical].get(unit)
    return None if factor is None else value * factor


def loinc_of(obs: Any) -> str | None:
    for coding in obs.code.coding or []:
        if coding.system == LOINC and coding.code:
            return coding.code
    return None


def _lab_value(obs: Any, analyte: str, code: str) -> LabValue:
    spec = CODES["analytes"][analyte]
    canonical = spec["unit"]
    quantity = obs.valueQuantity
    ref = f"Observation/{obs.id}" if obs.id else None
    when = effective_time(obs)
    if quantity is None or quantity.value is None:
        return LabValue(analyte, None, canonical, when, "(no value)", code, ref, problem="no numeric value")
    unit = (quantity.code or quantity.unit or "").strip()
    raw = f"{quantity.value} {quantity.unit or quantity.code or ''}".strip()
    value = convert(float(quantity.value), unit, canonical, analyte)
    if value is None:
        return LabValue(analyte, None, canonical, when, raw, code, ref, problem=f"unknown unit '{unit}'")
    if canonical == "cells/mm3" and value > _IMPLAUSIBLE_COUNT:
        return LabValue(analyte, None, canonical, when, raw, code, ref,
                        problem=f"{raw} is not physiologically plausible; probably a unit error")
    uln, defaulted = None, False
    for rng in obs.referenceRange or []:
        if rng.high is not None and rng.high.value is not None:
            high_unit = (rng.high.code or rng.high.unit or unit).strip()
            uln = convert(float(rng.high.value), high_unit, canonical, analyte)
            if uln is not None:
                break
    if uln is None and "default_uln" in spec:
        uln, defaulted = float(spec["default_uln"]), True
    return LabValue(analyte, value, canonical, when, raw, code, ref, uln=uln, uln_defaulted=defaulted)


def latest_labs(observations: Iterable[Any], now: datetime) -> dict[str, LabValue]:
    """Latest final/amended/corrected result per analyte (future-dated results ignored)."""
    best: dict[str, tuple[datetime, Any, str]] = {}
    floor = datetime.min.replace(tzinfo=timezone.utc)
    for obs in observations:
        if obs.status not in USABLE_STATUS:
            continue
        code = loinc_of(obs)
        analyte = ANALYTE_BY_LOINC.get(code or "")
        if analyte is None:
            continue
        when = effective_time(obs) or floor
        if when > now:
            continue
        if analyte not in best or when > best[analyte][0]:
            best[analyte] = (when, obs, code)
    return {analyte: _lab_value(obs, analyte, code) for analyte, (_, obs, code) in best.items()}
