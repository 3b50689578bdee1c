"""Unit conversion to the canonical units of facts.ANALYTES (codes.md, Labs and vitals)."""
from __future__ import annotations

import pytest

from fhir_mappings.units import IMPLAUSIBLE_COUNT, implausible, to_canonical, to_cells_per_mm3


@pytest.mark.parametrize(("value", "unit", "expected"), [
    (80, "10*3/uL", 80_000), (80, "10*3/mm3", 80_000), (80, "K/uL", 80_000), (80, "10*9/L", 80_000),
    (80_000, "/uL", 80_000), (80_000, "/mm3", 80_000), (80_000, "{cells}/uL", 80_000), (80_000, "10*6/L", 80_000),
])
def test_every_count_unit_to_cells_per_mm3(value, unit, expected):
    assert to_cells_per_mm3(value, unit) == pytest.approx(expected)


@pytest.mark.parametrize(("value", "unit", "canonical", "expected"), [
    (55, "U/L", "U/L", 55), (55, "IU/L", "U/L", 55), (55, "[IU]/L", "U/L", 55),
    (34.2, "umol/L", "mg/dL", 2.0), (1.1, "mg/dL", "mg/dL", 1.1),
    (1.65, "m", "cm", 165), (65, "[in_i]", "cm", 165.1), (165, "cm", "cm", 165),
    (60_000, "g", "kg", 60), (132.277, "[lb_av]", "kg", 60.0), (60, "kg", "kg", 60),
    (100.4, "[degF]", "Cel", 38.0), (38.0, "Cel", "Cel", 38.0),
])
def test_units_to_canonical(value, unit, canonical, expected):
    assert to_canonical(value, unit, canonical) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize(("unit", "canonical"), [
    ("furlongs", "cells/mm3"), ("%", "cells/mm3"), ("10*3/L", "cells/mm3"), ("mg/dL", "U/L"),
    ("umol/L", "U/L"), ("[degF]", "kg"), ("", "mg/dL"),
])
def test_unknown_or_wrong_dimension_unit_is_not_converted(unit, canonical):
    assert to_canonical(1.0, unit, canonical) is None


@pytest.mark.parametrize(("count", "doubtful"), [
    (IMPLAUSIBLE_COUNT - 1, False), (IMPLAUSIBLE_COUNT, False), (IMPLAUSIBLE_COUNT + 1, True),
])
def test_count_guard_just_below_at_and_above_one_million(count, doubtful):
    # codes.md unit guard: counts above ~1,000 in 10*3/uL (1,000,000/mm3) are not believed.
    assert (implausible(count, "cells/mm3") is not None) is doubtful


def test_negative_result_is_not_believed():
    assert implausible(-1, "U/L")
