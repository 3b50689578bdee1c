"""Unit conversion to the canonical units of facts.ANALYTES (codes.md, Labs and vitals).

The spellings are those laboratories send (issue "Real-world FHIR in": UCUM codes and the customary
non-UCUM forms); the factors are the physical ones, written here as literals, not read from the table.
"""
from __future__ import annotations

import pytest

from fhir_mappings.units import UNIT_TABLE, implausible, quantity_to_canonical, to_canonical


@pytest.mark.parametrize("unit", [
    # UCUM
    "10*3/uL", "10*3/mm3", "10*9/L", "/nL",
    # customary, not UCUM
    "10^3/uL", "x10^3/uL", "x10E3/uL", "K/uL", "K/ul", "k/uL", "thousand/uL", "G/L", "Giga/L", "10^9/L",
    # UCUM's case-insensitive forms and annotations
    "10*3/UL", "10*3{cells}/uL",
])
def test_thousands_per_microlitre_spellings_all_read_80_as_80_000(unit):
    assert to_canonical(80, unit, "cells/mm3") == pytest.approx(80_000)


@pytest.mark.parametrize("unit", ["/uL", "/mm3", "{cells}/uL", "cells/uL", "cells/mm3", "10*6/L", "/µL", "/μL"])
def test_cells_per_microlitre_spellings_read_as_they_are(unit):
    assert to_canonical(84_000, unit, "cells/mm3") == pytest.approx(84_000)


@pytest.mark.parametrize(("value", "unit", "canonical", "expected"), [
    (55, "U/L", "U/L", 55), (55, "u/l", "U/L", 55), (55, "IU/L", "U/L", 55), (55, "[IU]/L", "U/L", 55),
    (1, "ukat/L", "U/L", 60), (1, "µkat/L", "U/L", 60), (1, "μkat/L", "U/L", 60),  # 1 µkat/L = 60 U/L
    (34.2, "umol/L", "mg/dL", 2.0), (34.2, "µmol/L", "mg/dL", 2.0), (34.2, "μmol/L", "mg/dL", 2.0),  # 17.1 umol/L = 1 mg/dL
    (34.2, "UMOL/L", "mg/dL", 2.0), (1.1, "mg/dL", "mg/dL", 1.1), (1.1, "MG/DL", "mg/dL", 1.1), (11, "mg/L", "mg/dL", 1.1),
    (1.65, "m", "cm", 165), (65, "[in_i]", "cm", 165.1), (165, "cm", "cm", 165),
    (60_000, "g", "kg", 60), (132.277, "[lb_av]", "kg", 60.0), (60, "kg", "kg", 60),
    (100.4, "[degF]", "Cel", 38.0), (38.0, "Cel", "Cel", 38.0), (38.0, "°C", "Cel", 38.0),
])
def test_units_to_canonical(value, unit, canonical, expected):
    assert to_canonical(value, unit, canonical) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize(("unit", "canonical"), [
    ("furlongs", "cells/mm3"), ("%", "cells/mm3"), ("10*3/L", "cells/mm3"), ("mg/dL", "U/L"),
    ("umol/L", "U/L"), ("[degF]", "kg"), ("", "mg/dL"),
    ("g/L", "cells/mm3"),  # grams per litre is not giga per litre: case matters here
    ("[IU]/L", "cells/mm3"),  # UCUM calls IU dimensionless; it is never a cell count
])
def test_unknown_or_wrong_dimension_unit_is_not_converted(unit, canonical):
    assert to_canonical(1.0, unit, canonical) is None


class Q:
    def __init__(self, code=None, unit=None, system=None):
        self.code, self.unit, self.system = code, unit, system


def test_a_code_of_another_system_is_not_read_as_ucum_but_its_unit_text_is():
    value, unit = quantity_to_canonical(80, Q(code="PLT-K", unit="K/uL", system="urn:oid:1.2.3"), "cells/mm3")
    assert value == pytest.approx(80_000) and unit == "K/uL"


def test_an_unknown_ucum_code_falls_back_to_a_known_unit_text():
    value, unit = quantity_to_canonical(84, Q(code="10*3/{x}L", unit="x10E3/uL"), "cells/mm3")
    assert value == pytest.approx(84_000) and unit == "x10E3/uL"


@pytest.mark.parametrize(("count", "doubtful"), [(999_999, False), (1_000_000, False), (1_000_001, True)])
def test_count_guard_just_below_at_and_above_one_million(count, doubtful):
    # codes.md unit guard: counts above ~1,000 in 10*3/uL (1,000,000/mm3) are not believed.
    assert (implausible(count, "cells/mm3") is not None) is doubtful


def test_negative_result_is_not_believed():
    assert implausible(-1, "U/L")


# --- the table's UCUM entries against a UCUM implementation (ucumvert, on pint)

# Per canonical unit, a UCUM code of each dimension the table holds, with its factor from the
# sources (codes.md): the other entries' factors must follow from UCUM alone.
PIVOTS: dict[str, list[tuple[str, float]]] = {
    "cells/mm3": [("/uL", 1)],
    "U/L": [("U/L", 1)],
    "mg/dL": [("mg/dL", 1), ("umol/L", 1 / 17.1)],  # mass and amount concentration of bilirubin
    "cm": [("cm", 1)],
    "kg": [("kg", 1)],
    "Cel": [("Cel", 1)],
}


@pytest.fixture(scope="module")
def ucum():
    ucumvert = pytest.importorskip("ucumvert")  # a test dependency (requirements-dev.txt): always there in CI
    return ucumvert.PintUcumRegistry()


@pytest.mark.parametrize(("canonical", "spelling"), [
    (canonical, s.spelling) for canonical, spellings in UNIT_TABLE.items() for s in spellings if s.ucum])
def test_every_ucum_entry_is_valid_ucum_with_the_factor_ucum_gives(ucum, canonical, spelling):
    entry = next(s for s in UNIT_TABLE[canonical] if s.spelling == spelling)
    quantity = ucum.from_ucum(spelling)
    if entry.stated:  # [IU] and the molar mass: valid UCUM, but the factor is stated by a source
        return
    for pivot, pivot_factor in PIVOTS[canonical]:
        if spelling == pivot:
            assert entry.factor == pivot_factor
            return
        target = ucum.from_ucum(pivot)
        if quantity.dimensionality == target.dimensionality:
            ratio = (1 * quantity).to(target).magnitude
            assert entry.factor == pytest.approx(pivot_factor * ratio, rel=1e-9)
            return
    pytest.fail(f"{spelling} has no dimension of {canonical}")


@pytest.mark.parametrize(("canonical", "spelling"), [
    (canonical, s.spelling) for canonical, spellings in UNIT_TABLE.items() for s in spellings if not s.ucum])
def test_customary_spellings_are_marked_as_not_ucum_truthfully(ucum, canonical, spelling):
    """Either UCUM refuses the spelling, or UCUM reads it as something else (K = kelvin, G = gauss)."""
    try:
        quantity = ucum.from_ucum(spelling)
    except Exception:  # noqa: BLE001 (any refusal by the UCUM parser is the answer)
        return
    pivot = ucum.from_ucum(PIVOTS[canonical][0][0])
    assert quantity.dimensionality != pivot.dimensionality or spelling in ("cells/uL", "cells/mm3")
