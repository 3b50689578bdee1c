"""Latest result per analyte: status, dates, units, guards and ULN."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fhir_mappings.labs import latest_labs
from tests.fhir_mappings.fhirdata import NOW, fixture, model, observation


def labs(*raws):
    return latest_labs([model(r) for r in raws], NOW).final


def latest(*raws, patient=None):
    return latest_labs([model(r) for r in raws], NOW, patient)


def test_platelets_fixture_in_10e3_per_ul_with_the_labs_range():
    lab = latest_labs([fixture("observation-platelets-80.json")], NOW).final["platelets"]
    assert lab.value == pytest.approx(80_000) and lab.unit == "cells/mm3"
    assert lab.raw == "80 10*3/uL" and lab.code == "777-3" and lab.ref == "Observation/plt-1"
    assert lab.effective == datetime(2026, 11, 24, 8, 30, tzinfo=UTC)
    assert lab.uln == pytest.approx(400_000) and not lab.uln_defaulted and lab.problem is None


@pytest.mark.parametrize(("loinc", "analyte"), [
    ("751-8", "neutrophils"), ("26499-4", "neutrophils"), ("753-4", "neutrophils"),
    ("6690-2", "wbc"), ("26464-8", "wbc"), ("804-5", "wbc"),
    ("777-3", "platelets"), ("26515-7", "platelets"), ("778-1", "platelets"),
])
def test_every_count_loinc_code_selects_its_analyte(loinc, analyte):
    assert labs(observation(loinc, 2.5, "10*3/uL"))[analyte].value == pytest.approx(2500)


def test_percent_neutrophils_is_not_a_count():
    assert labs(observation("770-8", 60, "%")) == {}


def test_unknown_unit_cannot_be_verified():
    lab = labs(observation("777-3", 80, "furlongs"))["platelets"]
    assert lab.value is None and lab.problem == "unknown unit 'furlongs'" and lab.raw == "80 furlongs"


def test_unit_text_is_read_when_there_is_no_code():
    data = observation("777-3", 80, None)
    data["valueQuantity"]["unit"] = "K/uL"
    assert labs(data)["platelets"].value == pytest.approx(80_000)


@pytest.mark.parametrize(("value", "believed"), [(999, True), (1000, True), (1001, False), (3000, False)])
def test_implausible_count_in_10e3_per_ul(value, believed):
    # codes.md: a published example recorded ANC 3000 in 10*3/uL; above about 1,000 is not believed.
    lab = labs(observation("751-8", value, "10*3/uL"))["neutrophils"]
    assert (lab.value is not None) is believed
    if not believed:
        assert "plausible" in lab.problem


def test_latest_wins_over_older():
    result = labs(
        observation("777-3", 250, "10*3/uL", oid="old", when="2026-11-01T08:00:00Z"),
        observation("777-3", 80, "10*3/uL", oid="new", when="2026-11-24T08:00:00Z"),
    )["platelets"]
    assert result.ref == "Observation/new" and result.value == pytest.approx(80_000) and result.newer_unusable is None


@pytest.mark.parametrize("newest", [
    observation("777-3", 80, "furlongs", oid="new", when="2026-11-24T08:00:00Z"),
    observation("777-3", None, None, oid="new", when="2026-11-24T08:00:00Z",
                dataAbsentReason={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                                              "code": "error"}], "text": "specimen clotted"}),
])
def test_a_newest_result_without_a_usable_value_gives_way_to_the_newest_usable_one_and_is_named(newest):
    result = labs(observation("777-3", 250, "10*3/uL", oid="old", when="2026-11-20T08:00:00Z"), newest)["platelets"]
    assert result.ref == "Observation/old" and result.value == pytest.approx(250_000)
    assert result.newer_unusable.ref == "Observation/new" and result.newer_unusable.value is None


def test_with_no_usable_result_at_all_the_newest_is_kept_with_its_problem():
    result = labs(observation("777-3", 80, "furlongs", oid="new"))["platelets"]
    assert result.value is None and result.problem == "unknown unit 'furlongs'"


@pytest.mark.parametrize(("status", "used"), [
    ("final", True), ("amended", True), ("corrected", True),
    ("preliminary", False), ("registered", False), ("cancelled", False), ("entered-in-error", False),
])
def test_only_final_amended_corrected_results_are_the_final_value(status, used):
    result = latest(
        observation("777-3", 250, "10*3/uL", oid="older-final", when="2026-11-20T08:00:00Z"),
        observation("777-3", 80, "10*3/uL", oid="newer", status=status, when="2026-11-24T08:00:00Z"),
    )
    assert result.final["platelets"].ref == ("Observation/newer" if used else "Observation/older-final")
    in_preliminary = status in ("preliminary", "registered")
    assert ("platelets" in result.preliminary) is in_preliminary
    if in_preliminary:
        assert result.preliminary["platelets"].ref == "Observation/newer"
        assert result.preliminary["platelets"].preliminary and result.preliminary["platelets"].status == status


def test_a_preliminary_result_older_than_the_final_one_is_not_kept():
    result = latest(
        observation("777-3", 80, "10*3/uL", oid="prelim", status="preliminary", when="2026-11-20T08:00:00Z"),
        observation("777-3", 250, "10*3/uL", oid="final", when="2026-11-24T08:00:00Z"),
    )
    assert result.final["platelets"].ref == "Observation/final" and result.preliminary == {}


def test_effective_period_end_then_issued_are_the_fallback_dates():
    ast = latest_labs([fixture("observation-ast-no-range.json")], NOW).final["ast"]
    assert ast.effective == datetime(2026, 11, 23, 7, 15, tzinfo=UTC)
    bili = latest_labs([fixture("observation-bilirubin-umol.json")], NOW).final["bilirubin"]
    assert bili.effective == datetime(2026, 11, 22, 11, 0, tzinfo=UTC)  # issued, +01:00 to UTC


def test_period_start_is_used_when_the_period_has_no_end():
    data = observation("777-3", 200, "10*3/uL", when=None, effectivePeriod={"start": "2026-11-21T06:00:00-05:00"})
    assert labs(data)["platelets"].effective == datetime(2026, 11, 21, 11, 0, tzinfo=UTC)


def test_newer_by_effective_period_beats_older_effective_date_time():
    result = labs(
        observation("777-3", 250, "10*3/uL", oid="a", when="2026-11-20T08:00:00Z"),
        observation("777-3", 90, "10*3/uL", oid="b", when=None, effectivePeriod={"end": "2026-11-23T08:00:00Z"}),
        observation("777-3", 300, "10*3/uL", oid="c", when=None, issued="2026-11-22T08:00:00Z"),
    )["platelets"]
    assert result.ref == "Observation/b"


def test_missing_reference_range_uses_the_documented_default_uln():
    ast = latest_labs([fixture("observation-ast-no-range.json")], NOW).final["ast"]
    assert ast.value == 88 and ast.uln == 40 and ast.uln_defaulted is True  # [ixabepilone.md L §2.4]


@pytest.mark.parametrize(("loinc", "analyte", "default"), [("1920-8", "ast", 40), ("1742-6", "alt", 40), ("1975-2", "bilirubin", 1.2)])
def test_default_uln_per_liver_test(loinc, analyte, default):
    unit = "mg/dL" if analyte == "bilirubin" else "U/L"
    lab = labs(observation(loinc, 1.0, unit))[analyte]
    assert lab.uln == default and lab.uln_defaulted


def test_reference_range_in_umol_is_converted_to_mg_per_dl():
    bili = latest_labs([fixture("observation-bilirubin-umol.json")], NOW).final["bilirubin"]
    assert bili.value == pytest.approx(2.0) and bili.uln == pytest.approx(1.2, abs=0.01) and not bili.uln_defaulted


def test_vitals_in_other_units():
    result = labs(
        observation("8302-2", 65, "[in_i]", oid="h"), observation("29463-7", 132, "[lb_av]", oid="w"),
        observation("8310-5", 100.4, "[degF]", oid="t"),
    )
    assert result["height"].value == pytest.approx(165.1) and result["height"].unit == "cm"
    assert result["weight"].value == pytest.approx(59.87, abs=0.01) and result["weight"].unit == "kg"
    assert result["temperature"].value == pytest.approx(38.0) and result["temperature"].unit == "Cel"


def test_result_without_a_number_is_kept_with_a_problem():
    data = observation("777-3", None, None, dataAbsentReason={"coding": [{"code": "error"}], "text": "clotted sample"})
    lab = labs(data)["platelets"]
    assert lab.value is None and "clotted sample" in lab.problem


def test_result_dated_after_now_is_ignored():
    result = labs(
        observation("777-3", 250, "10*3/uL", oid="past", when="2026-11-24T08:00:00Z"),
        observation("777-3", 80, "10*3/uL", oid="future", when="2026-11-26T08:00:00Z"),
    )
    assert result["platelets"].ref == "Observation/past"


def test_partial_date_is_read_as_its_first_day():
    lab = labs(observation("777-3", 200, "10*3/uL", when="2026-11"))["platelets"]
    assert lab.effective == datetime(2026, 11, 1, tzinfo=UTC)
