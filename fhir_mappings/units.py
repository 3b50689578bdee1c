"""Quantities to the canonical unit of each analyte (facts.ANALYTES).

Only units we know are converted: an unrecognised unit is "cannot verify",
never a guess (codes.md, Labs and vitals). The table holds UCUM codes, as
laboratories send them in ``Quantity.code``, and a short list of customary
spellings that are not UCUM (``K/uL``, ``x10E3/uL``, ``G/L``, ``IU/L``...), each
marked as such. Every UCUM entry and its factor is checked against a UCUM
implementation in the tests (``ucumvert``); that library is not used at run
time because it reads ``K/uL`` as kelvin and ``G/L`` as gauss, converts
``[IU]/L`` into a cell count, and turns any dimensionally valid typo
(``10*3/L``) into a number. A reviewed whitelist is exact; see README, "Lab units".

Matching: the exact spelling first; then, where UCUM's case-insensitive form
is the one in common use (``10*3/UL``, ``u/l``, ``MG/DL``), the same spelling in
any case, except where case changes the meaning (``G/L`` giga per litre is
not ``g/L`` grams per litre). UCUM annotations in braces (``{cells}``) are
unity by the UCUM specification (§2.4 "curly braces") and are ignored; the
micro sign and the Greek mu are read as ``u``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .codes import UCUM, canonical_system

CELLS_PER_MM3 = "cells/mm3"


@dataclass(frozen=True)
class UnitSpelling:
    spelling: str
    factor: float  # to the canonical unit
    ucum: bool  # a UCUM code (its factor is checked against a UCUM implementation in the tests)
    case_sensitive: bool = False
    # Why the factor holds when UCUM alone cannot derive it (a molar mass; IU for enzymes).
    stated: str | None = None


def _u(spelling: str, factor: float, *, stated: str | None = None) -> UnitSpelling:
    return UnitSpelling(spelling, factor, ucum=True, stated=stated)


def _alias(spelling: str, factor: float, *, case_sensitive: bool = False) -> UnitSpelling:
    return UnitSpelling(spelling, factor, ucum=False, case_sensitive=case_sensitive)


# Per canonical unit [codes.md, Labs and vitals; cells/mm3 = /uL].
UNIT_TABLE: dict[str, tuple[UnitSpelling, ...]] = {
    CELLS_PER_MM3: (
        _u("10*3/uL", 1000), _u("10*3/mm3", 1000), _u("10*9/L", 1000), _u("/nL", 1000),
        _u("10^3/uL", 1000), _u("10^9/L", 1000),  # UCUM defines "10^" beside "10*"
        _u("/uL", 1), _u("/mm3", 1), _u("10*6/L", 1),
        # Customary, not UCUM: "K" and "x10^3" for thousands, "G" (giga) per litre.
        _alias("K/uL", 1000), _alias("K/mm3", 1000), _alias("x10^3/uL", 1000),
        _alias("x10E3/uL", 1000), _alias("10E3/uL", 1000), _alias("thou/uL", 1000), _alias("thousand/uL", 1000),
        _alias("x10^9/L", 1000), _alias("x10E9/L", 1000), _alias("10E9/L", 1000),
        _alias("G/L", 1000, case_sensitive=True), _alias("Giga/L", 1000),
        _alias("cells/uL", 1), _alias("cells/mm3", 1), _alias("/cumm", 1),
    ),
    "U/L": (
        _u("U/L", 1), _u("ukat/L", 60), _u("nkat/L", 0.06),
        # UCUM's [IU] is an arbitrary unit; for enzyme activity labs report IU/L and U/L alike.
        _u("[IU]/L", 1, stated="IU = U (µmol/min) for enzyme activity"), _alias("IU/L", 1),
    ),
    "mg/dL": (
        _u("mg/dL", 1), _u("mg/L", 0.1),
        # Total bilirubin: 17.1 umol/L = 1 mg/dL [codes.md] (molar mass 584.66 g/mol).
        _u("umol/L", 1 / 17.1, stated="bilirubin: 17.1 umol/L = 1 mg/dL [codes.md]"), _u("mmol/L", 1000 / 17.1),
    ),
    "cm": (_u("cm", 1), _u("m", 100), _u("mm", 0.1), _u("[in_i]", 2.54), _alias("in", 2.54)),
    "kg": (_u("kg", 1), _u("g", 0.001), _u("[lb_av]", 0.45359237), _alias("lb", 0.45359237), _alias("lbs", 0.45359237)),
    "Cel": (_u("Cel", 1), _alias("degC", 1), _alias("\u00b0C", 1, case_sensitive=True)),
}
_FAHRENHEIT = frozenset({"[degF]", "degF", "\u00b0F"})

_ANNOTATION = re.compile(r"\{[^{}]*\}")
_MICRO = str.maketrans({"\u00b5": "u", "\u03bc": "u"})


@lru_cache(maxsize=1024)  # a handful of spellings recur on every result
def _key(spelling: str) -> str:
    """The spelling without annotations, spaces, micro signs; "10*3{cells}/uL" -> "10*3/uL"."""
    text = _ANNOTATION.sub("", spelling.translate(_MICRO)).replace(" ", "")
    return "/" + text[1:] if text.startswith("1/") else text


def _index() -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    exact: dict[str, dict[str, float]] = {}
    folded: dict[str, dict[str, float]] = {}
    for canonical, spellings in UNIT_TABLE.items():
        exact[canonical] = {_key(s.spelling): s.factor for s in spellings}
        sensitive = {_key(s.spelling).casefold() for s in spellings if s.case_sensitive}
        by_fold: dict[str, set[float]] = {}
        for s in spellings:
            if not s.case_sensitive:
                by_fold.setdefault(_key(s.spelling).casefold(), set()).add(s.factor)
        # A folded spelling is only used when it means one thing in this table.
        folded[canonical] = {k: next(iter(f)) for k, f in by_fold.items() if len(f) == 1 and k not in sensitive}
    return exact, folded


_EXACT, _FOLDED = _index()

# A count above this (cells/mm3) is a unit error, e.g. an ANC of 3000 recorded
# in 10*3/uL (3,000,000/mm3) in a published FHIR example [codes.md, unit guard].
IMPLAUSIBLE_COUNT = 1_000_000


def unit_candidates(quantity: Any) -> list[str]:
    """The spellings a Quantity gives for its unit: the UCUM code (when the system is UCUM or
    unnamed), then the human-readable ``unit``. A code of another system is not a UCUM code."""
    out = []
    code = (quantity.code or "").strip()
    system = canonical_system(quantity.system)
    if code and system in (None, UCUM):
        out.append(code)
    text = (quantity.unit or "").strip()
    if text and text not in out:
        out.append(text)
    return out


def factor_to(unit: str, canonical: str) -> float | None:
    """The factor from ``unit`` to ``canonical``, or None for a unit we do not know."""
    key = _key(unit.strip())
    factor = _EXACT.get(canonical, {}).get(key)
    if factor is None:
        factor = _FOLDED.get(canonical, {}).get(key.casefold())
    return factor


def to_canonical(value: float, unit: str, canonical: str) -> float | None:
    """``value`` in ``unit`` converted to ``canonical``; None for a unit we do not know."""
    if canonical == "Cel" and _key(unit.strip()) in _FAHRENHEIT:
        return (value - 32) * 5 / 9
    factor = factor_to(unit, canonical)
    return None if factor is None else value * factor


def quantity_to_canonical(value: float, quantity: Any, canonical: str) -> tuple[float | None, str]:
    """``value`` (a number of ``quantity``) in ``canonical``, and the unit spelling that was read.

    The UCUM code wins; the ``unit`` text is read only when the code is absent,
    of another system, or not one we know.
    """
    candidates = unit_candidates(quantity)
    for unit in candidates:
        converted = to_canonical(value, unit, canonical)
        if converted is not None:
            return converted, unit
    return None, candidates[0] if candidates else ""


def implausible(value: float, canonical: str) -> str | None:
    """Why a converted value cannot be believed, or None."""
    if value < 0:
        return "a negative result"
    if canonical == CELLS_PER_MM3 and value > IMPLAUSIBLE_COUNT:
        return "not physiologically plausible for its unit (probably a unit error)"
    return None
