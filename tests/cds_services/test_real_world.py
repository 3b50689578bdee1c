"""Real-world FHIR in, full checks out (issue "Real-world FHIR in"), through the HTTP API.

Every test posts a whole CDS Hooks request. Expectations come from the label (platelets < 100,000
and ANC < 1,500 cells/mm3 contraindicate [L §4]; the monotherapy hepatic table [L §2.4]; with
capecitabine AST/ALT > 2.5 x ULN [L boxed warning]) and from the shapes real clients send.
"""
from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, load_json
from tests.support import markdown_text, rule_codes

SIGN = "/cds-services/ixabepilone-order-sign"
SELECT = "/cds-services/ixabepilone-order-select"
SANDBOX = Path(__file__).resolve().parents[3] / "shared" / "realclient" / "sandbox"
UCUM = "http://unitsofmeasure.org"


def request_body(name: str) -> dict[str, Any]:
    return load_json(FIXTURES / "http" / f"{name}.json")


def call(client, body: dict[str, Any], url: str = SIGN) -> dict[str, Any]:
    response = client.post(url, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def pairs(answer: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["source"]["topic"]["code"], c["indicator"]) for c in answer["cards"]]


def card(answer: dict[str, Any], code: str) -> dict[str, Any]:
    (found,) = [c for c in answer["cards"] if c["source"]["topic"]["code"] == code]
    return found


def unavailable_text(answer: dict[str, Any]) -> str:
    return markdown_text(" ".join(c["summary"] + "\n" + c["detail"] for c in answer["cards"]
                                  if c["source"]["topic"]["code"] == "check-unavailable"))


def lab(body: dict[str, Any], rid: str) -> dict[str, Any]:
    for key in ("labs", "vitals"):
        for entry in body["prefetch"][key]["entry"]:
            if entry["resource"]["id"] == rid:
                return entry["resource"]
    raise KeyError(rid)


def draft(body: dict[str, Any]) -> dict[str, Any]:
    return body["context"]["draftOrders"]["entry"][0]["resource"]


# --- the CDS Hooks sandbox, as captured -------------------------------------------------

SANDBOX_NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # the captures' labs are of 2026-11-30


@pytest.mark.parametrize("name", ["order-select-platelets-low.json", "order-sign-platelets-low.json"])
def test_the_sandbox_requests_give_a_critical_platelet_card(make_app, name):
    """The sandbox sends category as an object and a Bundle without type; platelets 80,000 [L §4]."""
    capture = load_json(SANDBOX / name)
    body = capture["request"]
    assert isinstance(draft(body)["category"], dict) and "type" not in body["context"]["draftOrders"]
    client = make_app(clock=lambda: SANDBOX_NOW).test_client()
    url = f"/cds-services/ixabepilone-{body['hook']}"
    answer = call(client, body, url)
    platelets = card(answer, "platelets-low")
    assert platelets["indicator"] == "critical" and "80,000" in platelets["summary"]
    assert "ixabepilone order unreadable" not in unavailable_text(answer)


# --- shapes that no check reads, or that R4 spells as lists ---------------------------------

def _spec_shaped(body: dict[str, Any]) -> dict[str, Any]:
    """The hook page's example: doseAndRate as an object; the sandbox's: category as an object,
    no intent, a draftOrders Bundle without type."""
    body = copy.deepcopy(body)
    order = draft(body)
    for dosage in order["dosageInstruction"]:
        dosage["doseAndRate"] = dosage["doseAndRate"][0]
    order["category"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                     "code": "outpatient"}]}
    order.pop("intent")
    body["context"]["draftOrders"].pop("type", None)
    return body


@pytest.mark.parametrize("name", ["several-findings", "dose-check", "hepatic-monotherapy", "cyp3a4-strong-inhibitor"])
def test_a_draft_in_the_shapes_real_clients_send_gets_the_full_set_of_checks(client, name):
    body = request_body(name)
    assert pairs(call(client, _spec_shaped(body))) == pairs(call(client, body))


def test_a_draft_bundle_whose_one_entry_is_an_object_gets_the_full_set_of_checks(client):
    """Bundle.entry is a list in R4; one entry sent as an object is read as a list of one, like every
    list we read (it was a 400, which switched off the platelet card: 80,000/mm3 [L §4])."""
    body = request_body("several-findings")
    shaped = copy.deepcopy(body)
    (entry,) = shaped["context"]["draftOrders"]["entry"]
    shaped["context"]["draftOrders"]["entry"] = entry
    assert pairs(call(client, shaped)) == pairs(call(client, body))
    assert ("platelets-low", "critical") in pairs(call(client, shaped))


def test_dose_read_from_a_dose_and_rate_object_is_checked(client):
    """dose-check.json orders above the label dose [L §2]: read through an object, still flagged."""
    answer = call(client, _spec_shaped(request_body("dose-check")))
    assert ("dose-check", "warning") in pairs(answer)
    assert "cannot be verified" not in card(answer, "dose-check")["summary"]


def test_the_suggestion_echoes_the_draft_with_every_element_it_was_sent_with(client):
    body = _spec_shaped(request_body("hepatic-monotherapy"))
    answer = call(client, body)
    (action,) = card(answer, "hepatic-monotherapy")["suggestions"][0]["actions"]
    assert action["resource"]["category"] == draft(body)["category"]  # kept as sent, not dropped
    assert isinstance(action["resource"]["dosageInstruction"][0]["doseAndRate"], list)


def test_a_malformed_dosage_makes_only_the_dose_check_say_cannot_verify(client):
    body = request_body("platelets-low")
    draft(body)["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = "seventy"
    answer = call(client, body)
    assert card(answer, "platelets-low")["indicator"] == "critical"  # every other check still ran
    dose = card(answer, "dose-check")
    assert "cannot be verified" in dose["summary"] and "dosageInstruction is not valid FHIR R4" in dose["detail"]


def test_a_malformed_element_of_another_resource_names_what_it_weakens(client):
    body = request_body("platelets-low")
    body["prefetch"]["allergies"].setdefault("entry", []).append({"resource": {
        "resourceType": "AllergyIntolerance", "id": "bad-allergy", "patient": {"reference": f"Patient/{body['context']['patientId']}"},
        "code": {"coding": "paclitaxel"}}})
    answer = call(client, body)
    assert card(answer, "platelets-low")["indicator"] == "critical"
    assert ("AllergyIntolerance/bad-allergy: its code is not valid FHIR R4" in unavailable_text(answer)
            and "the hypersensitivity check could not use it" in unavailable_text(answer))


# --- qualified values: a bound settles a threshold or is "cannot verify" -----------------

def _bounded(body, rid, comparator, value, unit):
    resource = lab(body, rid)
    resource["valueQuantity"] = {"value": value, "comparator": comparator, "unit": unit, "system": UCUM, "code": unit}
    return body


@pytest.mark.parametrize(("comparator", "value", "fires"), [
    ("<", 1.4, True),    # below 1,400: below 1,500 [L §4]
    ("<", 1.5, True),    # below 1,500 itself
    ("<=", 1.5, None),   # could be exactly 1,500, which is not below
    ("<", 2.0, None),    # the example: "<2.0" cannot be graded against 1,500
    (">", 1.5, False),   # above 1,500: not low
    (">=", 1.5, False),  # at least 1,500: not low
    (">", 1.4, None),
])
def test_anc_reported_as_a_bound(client, comparator, value, fires):
    body = _bounded(request_body("clean"), "ixa-clean-anc", comparator, value, "10*3/uL")
    answer = call(client, body)
    if fires:
        neut = card(answer, "neutrophils-low")
        assert neut["indicator"] == "critical" and f"ANC {comparator}{value * 1000:,.0f}/mm3" in neut["summary"]
    else:
        assert "neutrophils-low" not in rule_codes(answer)
    ungraded = f"ANC {comparator}{value * 1000:,.0f} not graded" in unavailable_text(answer)
    assert ungraded is (fires is None)


def test_a_bound_is_never_shown_as_a_measurement(client):
    answer = call(client, _bounded(request_body("clean"), "ixa-clean-plt", "<", 20, "10*3/uL"))
    summary = card(answer, "platelets-low")["summary"]
    assert "Platelets <20,000/mm3" in summary and " 20,000" not in summary.replace("<20,000", "")


@pytest.mark.parametrize(("comparator", "value", "expected"), [
    (">", 400, ("hepatic-monotherapy", "critical")),  # > 10 x ULN 40: not recommended [L §2.4]
    (">", 401, ("hepatic-monotherapy", "critical")),
    (">=", 400, None),  # could be exactly 10 x ULN (32 mg/m2) or above (not recommended)
    ("<", 40, "no card"),  # at most 1 x ULN: the first row, 40 mg/m2
])
def test_ast_reported_as_a_bound_against_the_hepatic_table(client, comparator, value, expected):
    body = _bounded(request_body("clean"), "ixa-clean-ast", comparator, value, "U/L")
    answer = call(client, body)
    hepatic = [p for p in pairs(answer) if p[0] == "hepatic-monotherapy"]
    if expected == "no card":
        assert hepatic == [] and "not graded" not in unavailable_text(answer)
    elif expected is None:
        assert hepatic == [] and f"AST {comparator}10 x ULN not graded" in unavailable_text(answer)
    else:
        assert hepatic == [expected]
        summary = card(answer, "hepatic-monotherapy")["summary"]
        assert f"AST {comparator}{'10' if value == 400 else '10.03'} x ULN" in summary  # 401/40 = 10.025
        assert "AST 10" not in summary


@pytest.mark.parametrize(("text", "unit_in_range", "fires"), [
    ("<20", True, True), ("< 20 10*3/uL", False, True), (">1000", True, False), ("<150", True, None),
])
def test_platelets_reported_as_text(client, text, unit_in_range, fires):
    body = request_body("clean")
    resource = lab(body, "ixa-clean-plt")
    resource.pop("valueQuantity")
    resource["valueString"] = text
    if not unit_in_range:
        resource.pop("referenceRange")
    answer = call(client, body)
    assert ("platelets-low" in rule_codes(answer)) is bool(fires)
    assert ("not graded" in unavailable_text(answer)) is (fires is None)


def test_a_text_result_without_any_unit_is_cannot_verify(client):
    body = request_body("clean")
    resource = lab(body, "ixa-clean-plt")
    resource.pop("valueQuantity")
    resource.pop("referenceRange")
    resource["valueString"] = "<20"
    answer = call(client, body)
    assert "platelets-low" not in rule_codes(answer)
    assert "the result has no unit" in unavailable_text(answer)


# --- lab units as laboratories send them ------------------------------------------------

@pytest.mark.parametrize("unit", ["K/ul", "K/uL", "x10E3/uL", "x10^3/uL", "10^3/uL", "thousand/uL", "G/L", "Giga/L",
                                  "10*9/L", "/nL"])
def test_platelets_84_in_thousands_however_spelt_is_critical(client, unit):
    body = request_body("clean")
    lab(body, "ixa-clean-plt")["valueQuantity"] = {"value": 84, "unit": unit}  # no UCUM code: the lab's own text
    answer = call(client, body)
    assert card(answer, "platelets-low")["indicator"] == "critical"
    assert "84,000" in card(answer, "platelets-low")["summary"]


@pytest.mark.parametrize("unit", ["K/uL", "x10E3/uL", "G/L", "10^3/uL"])
@pytest.mark.parametrize(("value", "fires"), [(99.9, True), (100, False), (100.1, False)])  # < 100,000 [L §4]
def test_platelets_in_customary_spellings_at_the_threshold(client, unit, value, fires):
    body = request_body("clean")
    lab(body, "ixa-clean-plt")["valueQuantity"] = {"value": value, "unit": unit}
    assert ("platelets-low" in rule_codes(call(client, body))) is fires


@pytest.mark.parametrize(("unit", "value"), [("cells/uL", 84_000), ("/mm3", 84_000), ("{cells}/uL", 84_000)])
def test_platelets_in_cells_per_microlitre(client, unit, value):
    body = request_body("clean")
    lab(body, "ixa-clean-plt")["valueQuantity"] = {"value": value, "unit": unit}
    assert card(call(client, body), "platelets-low")["indicator"] == "critical"


@pytest.mark.parametrize(("unit", "value", "fires"), [
    ("ukat/L", 1.66, False), ("ukat/L", 1.67, True), ("µkat/L", 1.67, True), ("μkat/L", 1.67, True),  # 1 µkat/L = 60 U/L
    ("IU/L", 100, False), ("IU/L", 101, True),  # ULN 40: > 2.5 x ULN is > 100 U/L [L boxed warning]
])
def test_ast_in_katal_and_international_units_with_capecitabine(client, unit, value, fires):
    body = request_body("hepatic-combination")
    ast = next(e["resource"] for e in body["prefetch"]["labs"]["entry"]
               if e["resource"]["code"]["coding"][0]["code"] == "1920-8")
    ast["valueQuantity"] = {"value": value, "unit": unit}
    ast["referenceRange"] = [{"high": {"value": 40, "unit": "U/L", "system": UCUM, "code": "U/L"}}]
    assert ("hepatic-combination" in rule_codes(call(client, body))) is fires


@pytest.mark.parametrize("unit", ["umol/L", "µmol/L", "μmol/L"])
def test_bilirubin_in_micromoles_however_the_micro_is_written(client, unit):
    """51.3 umol/L = 3.0 mg/dL (17.1 umol/L = 1 mg/dL); ULN 1.2 mg/dL: 2.5 x, the 20 mg/m2 row [L §2.4]."""
    body = request_body("clean")
    lab(body, "ixa-clean-bili")["valueQuantity"] = {"value": 51.3, "unit": unit}
    hepatic = card(call(client, body), "hepatic-monotherapy")
    assert hepatic["indicator"] == "warning" and "20 mg/m2" in hepatic["summary"]


def test_an_unknown_unit_stays_cannot_verify(client):
    body = request_body("clean")
    lab(body, "ixa-clean-plt")["valueQuantity"] = {"value": 84, "unit": "10*3/L"}
    answer = call(client, body)
    assert "platelets-low" not in rule_codes(answer) and "unknown unit '10*3/L'" in unavailable_text(answer)


# --- code systems as EHRs send them --------------------------------------------------------

def test_oids_as_systems_are_read_like_the_canonical_uris(client):
    body = request_body("several-findings")
    plain = pairs(call(client, body))
    oids = {"http://loinc.org": "urn:oid:2.16.840.1.113883.6.1",
            "http://snomed.info/sct": "urn:oid:2.16.840.1.113883.6.96",
            "http://www.nlm.nih.gov/research/umls/rxnorm": "urn:oid:2.16.840.1.113883.6.88",
            "http://hl7.org/fhir/sid/icd-10-cm": "urn:oid:2.16.840.1.113883.6.90",
            "http://hl7.org/fhir/sid/cvx": "urn:oid:2.16.840.1.113883.12.292"}
    text = json.dumps(body)
    for uri, oid in oids.items():
        text = text.replace(f'"system": "{uri}"', f'"system": "{oid}"')
    assert "urn:oid:2.16.840.1.113883.6.1" in text and "urn:oid:2.16.840.1.113883.6.88" in text
    assert pairs(call(client, json.loads(text))) == plain


@pytest.mark.parametrize("system", ["urn:oid:2.16.840.1.113883.6.96", "urn:oid:2.16.840.1.113883.6.90"])
def test_pregnancy_condition_coded_with_an_oid(client, system):
    body = request_body("clean")
    code = "77386006" if system.endswith("6.96") else "Z33.1"
    body["prefetch"]["conditions"]["entry"].append({"resource": {
        "resourceType": "Condition", "id": "preg", "subject": {"reference": "Patient/ixa-clean"},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
        # recorded after the patient's negative hCG of 2026-11-22, which would clear older evidence
        "code": {"coding": [{"system": system, "code": code}]}, "recordedDate": "2026-11-24"}})
    assert card(call(client, body), "pregnancy")["indicator"] == "critical"


def test_live_vaccine_coded_with_the_cvx_oid(client):
    body = request_body("live-vaccine")
    plain = pairs(call(client, body))
    text = json.dumps(body).replace('"http://hl7.org/fhir/sid/cvx"', '"urn:oid:2.16.840.1.113883.12.292"')
    assert ("live-vaccine", "warning") in plain and pairs(call(client, json.loads(text))) == plain


# --- which result counts ----------------------------------------------------------------

def _add_lab(body, resource):
    body["prefetch"]["labs"]["entry"].insert(0, {"resource": resource})
    body["prefetch"]["labs"]["total"] = len(body["prefetch"]["labs"]["entry"])
    return resource


def _platelets(rid, value, when, status="final", **extra):
    resource = {"resourceType": "Observation", "id": rid, "status": status,
                "code": {"coding": [{"system": "http://loinc.org", "code": "777-3"}]},
                "subject": {"reference": "Patient/ixa-clean"}, "effectiveDateTime": when, **extra}
    if value is not None:
        resource["valueQuantity"] = {"value": value, "unit": "10*3/uL", "system": UCUM, "code": "10*3/uL"}
    return resource


def test_newest_result_without_a_value_gives_way_to_the_newest_usable_one(client):
    body = request_body("clean")
    lab(body, "ixa-clean-plt")["valueQuantity"]["value"] = 84  # 2026-11-24: low
    _add_lab(body, _platelets("plt-clotted", None, "2026-11-25T09:00:00Z", dataAbsentReason={"text": "specimen clotted"}))
    answer = call(client, body)
    assert card(answer, "platelets-low")["indicator"] == "critical" and "84,000" in card(answer, "platelets-low")["summary"]
    assert "the newest Platelets (Observation/plt-clotted) of 2026-11-25 could not be used" in unavailable_text(answer)
    assert "specimen clotted" in unavailable_text(answer)


@pytest.mark.parametrize(("value", "fires"), [(99, True), (100, False)])  # < 100,000 [L §4]
def test_a_newer_preliminary_result_that_crosses_the_threshold_fires_and_says_preliminary(client, value, fires):
    body = request_body("clean")  # final platelets 245,000 on 2026-11-24
    _add_lab(body, _platelets("plt-prelim", value, "2026-11-25T09:00:00Z", status="preliminary"))
    answer = call(client, body)
    assert ("platelets-low" in rule_codes(answer)) is fires
    if fires:
        assert "Platelets (preliminary) 99,000/mm3" in card(answer, "platelets-low")["summary"]


def test_a_newer_final_result_supersedes_a_preliminary_one(client):
    body = request_body("clean")
    lab(body, "ixa-clean-plt")["effectiveDateTime"] = "2026-11-25T10:00:00Z"  # final 245,000, newest
    _add_lab(body, _platelets("plt-prelim", 60, "2026-11-25T09:00:00Z", status="preliminary"))
    assert "platelets-low" not in rule_codes(call(client, body))


def _sexed_range(high, code, display):
    return {"high": {"value": high, "unit": "U/L", "system": UCUM, "code": "U/L"},
            "appliesTo": [{"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]}]}


@pytest.mark.parametrize(("ranges", "fires"), [
    # AST 90 U/L with capecitabine; > 2.5 x ULN contraindicates [L boxed warning].
    ([_sexed_range(50, "248153007", "Male"), _sexed_range(35, "248152002", "Female")], True),   # female: 90/35 = 2.57
    ([_sexed_range(35, "248153007", "Male"), _sexed_range(50, "248152002", "Female")], False),  # female: 90/50 = 1.8
    ([{"high": {"value": 50, "unit": "U/L"}, "age": {"low": {"value": 70, "unit": "a"}}},
      {"high": {"value": 35, "unit": "U/L"}, "age": {"low": {"value": 80, "unit": "a"}}}], True),  # none fits: the lowest
])
def test_the_reference_range_that_fits_the_patient_sets_the_uln(client, ranges, fires):
    body = request_body("hepatic-combination")
    body["prefetch"]["patient"]["gender"] = "female"
    ast = next(e["resource"] for e in body["prefetch"]["labs"]["entry"]
               if e["resource"]["code"]["coding"][0]["code"] == "1920-8")
    ast["valueQuantity"] = {"value": 90, "unit": "U/L", "system": UCUM, "code": "U/L"}
    ast["referenceRange"] = ranges
    assert ("hepatic-combination" in rule_codes(call(client, body))) is fires


def test_newest_result_in_a_unit_we_cannot_read_gives_way_to_the_newest_usable_one(client):
    """A newer platelet count in an unknown unit is not a number: the older 84,000/mm3 is judged [L §4]."""
    body = request_body("clean")
    lab(body, "ixa-clean-plt")["valueQuantity"]["value"] = 84
    newer = _add_lab(body, _platelets("plt-odd-unit", 90, "2026-11-25T09:00:00Z"))
    newer["valueQuantity"] = {"value": 90, "unit": "10*3/L"}
    answer = call(client, body)
    assert card(answer, "platelets-low")["indicator"] == "critical" and "84,000" in card(answer, "platelets-low")["summary"]
    assert "the newest Platelets (Observation/plt-odd-unit) of 2026-11-25 could not be used" in unavailable_text(answer)


# --- a local code first, the standard one second -------------------------------------------

@pytest.mark.parametrize("loinc", ["http://loinc.org", "urn:oid:2.16.840.1.113883.6.1"])
def test_a_local_lab_code_before_loinc_still_matches(client, loinc):
    """EHR exports put the lab's own code first; 777-3 second still makes it a platelet count [L §4]."""
    body = request_body("clean")
    plt = lab(body, "ixa-clean-plt")
    plt["code"]["coding"].insert(0, {"system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.768282", "code": "PLT",
                                     "display": "PLATELET COUNT"})
    plt["code"]["coding"][1]["system"] = loinc
    plt["valueQuantity"]["value"] = 84
    assert card(call(client, body), "platelets-low")["indicator"] == "critical"


# --- two copies of one resource ------------------------------------------------------------

@pytest.mark.parametrize(("meta_low", "meta_high", "fires"), [
    # the 80,000/mm3 copy is the later version: it counts [L §4]
    ({"lastUpdated": "2026-11-24T16:00:00Z"}, {"lastUpdated": "2026-11-24T15:30:00Z"}, True),
    ({"versionId": "10"}, {"versionId": "9"}, True),  # numbers, not text
    # the 245,000/mm3 copy is the later version: no platelet card
    ({"lastUpdated": "2026-11-24T15:30:00Z"}, {"lastUpdated": "2026-11-24T16:00:00Z"}, False),
    ({"versionId": "2"}, {"versionId": "3"}, False),
])
@pytest.mark.parametrize("low_first", [True, False])
def test_of_two_copies_of_one_result_the_later_version_counts_and_the_conflict_is_said(
        client, meta_low, meta_high, fires, low_first):
    body = request_body("clean")
    high = lab(body, "ixa-clean-plt")
    low = copy.deepcopy(high)
    low["valueQuantity"]["value"] = 80
    high["meta"], low["meta"] = meta_high, meta_low
    entries = body["prefetch"]["labs"]["entry"]
    entries.insert(0 if low_first else len(entries), {"resource": low})
    answer = call(client, body)
    assert ("platelets-low" in rule_codes(answer)) is fires
    assert ("Observation/ixa-clean-plt was sent twice with different content: the later version" in
            unavailable_text(answer))


@pytest.mark.parametrize(("value", "fires"), [(99, False), (100, False), (101, True)])  # > 2.5 x ULN 40 [L boxed warning]
def test_a_newer_preliminary_ast_with_capecitabine_fires_at_the_threshold_and_says_preliminary(client, value, fires):
    body = request_body("hepatic-combination")
    final = next(e["resource"] for e in body["prefetch"]["labs"]["entry"]
                 if e["resource"]["code"]["coding"][0]["code"] == "1920-8")
    final["valueQuantity"]["value"] = 30  # final AST 30 U/L on 2026-11-24: normal
    newer = copy.deepcopy(final)
    newer.update(id="ast-prelim", status="preliminary", effectiveDateTime="2026-11-25T09:00:00Z")
    newer["valueQuantity"]["value"] = value
    _add_lab(body, newer)
    answer = call(client, body)
    assert ("hepatic-combination" in rule_codes(answer)) is fires
    if fires:
        assert "AST (preliminary) 2.52 x ULN" in card(answer, "hepatic-combination")["summary"]


@pytest.mark.parametrize(("ast", "fires"), [(87, False), (87.5, False), (88, True)])  # > 2.5 x 35 = 87.5 U/L
def test_the_fitting_reference_range_sets_the_threshold_just_below_at_and_above(client, ast, fires):
    """Female patient, ranges for men (ULN 50) and women (ULN 35): the women's sets 2.5 x ULN [L boxed warning]."""
    body = request_body("hepatic-combination")
    body["prefetch"]["patient"]["gender"] = "female"
    resource = next(e["resource"] for e in body["prefetch"]["labs"]["entry"]
                    if e["resource"]["code"]["coding"][0]["code"] == "1920-8")
    resource["valueQuantity"] = {"value": ast, "unit": "U/L", "system": UCUM, "code": "U/L"}
    resource["referenceRange"] = [_sexed_range(50, "248153007", "Male"), _sexed_range(35, "248152002", "Female")]
    assert ("hepatic-combination" in rule_codes(call(client, body))) is fires
