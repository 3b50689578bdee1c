"""Quantities to the canonical unit of each analyte (facts.ANALYTES).

Only units we know are converted: an unrecognised unit is "cannot verify",
never a guess (codes.md, Labs and vitals). Keys are UCUM codes as sent in
``Quantity.code``, plus the unit texts that say the same thing when only
``Quantity.unit`` is filled.
"""
from __future__ import annotations

from typing import Any

CELLS_PER_MM3 = "cells/mm3"

# Factor from a unit to the canonical unit, per canonical unit [codes.md, Labs and vitals].
FACTORS: dict[str, dict[str, float]] = {
    CELLS_PER_MM3: {
        "10*3/uL": 1000, "10*3/mm3": 1000, "K/uL": 1000, "10*9/L": 1000,
        "/uL": 1, "/mm3": 1, "{cells}/uL": 1, "10*6/L": 1,
    },
    "U/L": {"U/L": 1, "IU/L": 1, "[IU]/L": 1},
    # 17.1 umol/L = 1 mg/dL of bilirubin [codes.md]
    "mg/dL": {"mg/dL": 1, "umol/L": 1 / 17.1},
    "cm": {"cm": 1, "m": 100, "[in_i]": 2.54, "in": 2.54},
    "kg": {"kg": 1, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237},
    "Cel": {"Cel": 1},
}
_FAHRENHEIT = {"[degF]", "degF"}

# A count above this (cells/mm3) is a unit error, e.g. an ANC of 3000 recorded
# in 10*3/uL (3,000,000/mm3) in a published FHIR example [codes.md, unit guard].
IMPLAUSIBLE_COUNT = 1_000_000


def unit_of(quantity: Any) -> str:
    """The UCUM code of a Quantity, else its unit text."""
    return (quantity.code or quantity.unit or "").strip()


def to_canonical(value: float, unit: str, canonical: str) -> float | None:
    """``value`` in ``unit`` converted to ``canonical``; None for a unit we do not know."""
    if canonical == "Cel" and unit in _FAHRENHEIT:
        return (value - 32) * 5 / 9
    factor = FACTORS.get(canonical, {}).get(unit)
    return None if factor is None else value * factor


def to_cells_per_mm3(value: float, unit: str) -> float | None:
    return to_canonical(value, unit, CELLS_PER_MM3)


def implausible(value: float, canonical: str) -> str | None:
    """Why a converted value cannot be believed, or None."""
    if value < 0:
        return "a negative result"
    if canonical == CELLS_PER_MM3 and value > IMPLAUSIBLE_COUNT:
        return "not physiologically plausible for its unit (probably a unit error)"
    return None
