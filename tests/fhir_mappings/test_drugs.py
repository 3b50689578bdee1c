"""Drug identification by RxNorm, NDC, ATC, ingredient and name; dose reading."""
from __future__ import annotations

import json

import pytest

from fhir_mappings.drugs import (
    DATA_FILE,
    drugs_of,
    identify_concept,
    identify_text,
    known_drug_ids,
    may_name_known_drug,
    normalize_ndc,
    read_doses,
)
from tests.fhir_mappings.fhirdata import fixture, medication_request, model, raw, rxnorm

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
ATC = "http://www.whocc.no/atc"


def read_dose(request):
    """The first dose the order carries (the one a suggestion rewrites), or None."""
    doses = read_doses(request)
    return doses[0] if doses else None


def concept(system, code, display=None, text=None):
    value = {"coding": [{"system": system, "code": code, **({"display": display} if display else {})}]}
    if text:
        value["text"] = text
    return model(medication_request(value)).medicationCodeableConcept


@pytest.mark.parametrize("code", ["337523", "744825", "1726275", "1726269", "1726276", "1726271", "1726278", "1726274"])
def test_all_eight_ixabepilone_rxnorm_codes(code):
    # codes.md: IN, BN, SCDC x2, SCD x2, SBD x2.
    assert identify_concept(concept("http://www.nlm.nih.gov/research/umls/rxnorm", code)) == (frozenset({"ixabepilone"}), "rxnorm")


@pytest.mark.parametrize("ndc", [
    "70020-1910-01", "70020191001", "70020-1910-1", "70020-1910-02", "70020191002",
    "70020-1911-01", "70020191101", "70020-1911-02", "70020191102",
])
def test_ixempra_ndc_in_hyphenated_11_digit_and_openfda_forms(ndc):
    assert identify_concept(concept(NDC, ndc)) == (frozenset({"ixabepilone"}), "ndc")


@pytest.mark.parametrize(("given", "expected"), [
    ("0015-1910-12", "00015191012"), ("70020-191-01", "70020019101"), ("70020-1910-1", "70020191001"),
    ("70020191001", "70020191001"), ("7002019100", None), ("not-an-ndc", None),
])
def test_ndc_normalisation_to_11_digits(given, expected):
    assert normalize_ndc(given) == expected


def test_atc_code():
    assert identify_concept(concept(ATC, "L01DC04")) == (frozenset({"ixabepilone"}), "atc")
    assert identify_concept(concept(ATC, "L01BC06")) == (frozenset({"capecitabine"}), "atc")


@pytest.mark.parametrize(("text", "found"), [
    ("IXEMPRA kit 45 mg", {"ixabepilone"}), ("ixabepilone", {"ixabepilone"}), ("Ixempra-kit", {"ixabepilone"}),
    ("Ixempraxyl", set()), ("preixabepilone", set()), ("ixempra2", set()),
    ("Paxlovid 300 mg/100 mg", {"nirmatrelvir", "ritonavir"}), ("Kaletra 200/50", {"lopinavir", "ritonavir"}),
    ("St. John\u2019s Wort 300 mg", {"st-johns-wort"}), ("Rifampicin 600 mg", {"rifampin"}),
    ("Cremophor EL (polyoxyl 35 castor oil)", {"cremophor"}), ("castor oil", {"castor-oil"}),
    ("Kolliphor EL", {"cremophor"}), ("macrogolglycerol ricinoleate", {"cremophor"}),
    ("lisinopril 10 MG Oral Tablet", set()),
])
def test_name_matching_is_case_insensitive_on_word_boundaries(text, found):
    assert set(identify_text(text)) == found


def test_a_known_code_wins_over_names_in_the_text():
    premed = concept("http://www.nlm.nih.gov/research/umls/rxnorm", "3264", text="dexamethasone before ixabepilone")
    assert identify_concept(premed) == (frozenset({"dexamethasone"}), "rxnorm")


def test_unknown_code_falls_back_to_the_display():
    found = concept("http://www.nlm.nih.gov/research/umls/rxnorm", "197853", display="ketoconazole 200 MG Oral Tablet")
    assert identify_concept(found) == (frozenset({"ketoconazole"}), "name")


def test_unrelated_medication_is_not_identified():
    assert identify_concept(concept("http://www.nlm.nih.gov/research/umls/rxnorm", "314076", "lisinopril 10 MG Oral Tablet")) == (frozenset(), None)


def test_fixture_order_by_scd_code():
    ids, how, display = drugs_of(fixture("medicationrequest-ixempra-rxnorm.json"), {})
    assert ids == {"ixabepilone"} and how == "rxnorm" and display == "IXEMPRA 15 mg kit"


def test_contained_medication_identified_by_its_ingredient():
    ids, how, _ = drugs_of(fixture("medicationrequest-contained-ingredient.json"), {})
    assert ids == {"ixabepilone"} and how == "ingredient"


def test_reference_to_a_prefetched_medication():
    bundle = raw("medicationrequest-prefetched-medication.json")
    order, medication = (model(e["resource"]) for e in bundle["entry"])
    assert drugs_of(order, {"Medication/med-keto": medication})[:2] == (frozenset({"ketoconazole"}), "rxnorm")
    absolute = model(medication_request(medicationReference={"reference": "https://ehr.example.org/fhir/Medication/med-keto"}))
    assert drugs_of(absolute, {"Medication/med-keto": medication})[0] == {"ketoconazole"}
    assert drugs_of(order, {}) == (frozenset(), None, "")


def test_name_only_order():
    ids, how, display = drugs_of(fixture("medicationrequest-name-only.json"), {})
    assert ids == {"ixabepilone"} and how == "name" and display == "Ixempra kit 45 mg"


def test_combination_product_maps_to_every_ingredient():
    med = model({"resourceType": "Medication", "id": "pax", "code": {"text": "nirmatrelvir 150 MG / ritonavir 100 MG"}})
    assert drugs_of(med, {})[0] == {"nirmatrelvir", "ritonavir"}


def test_known_drug_ids_are_the_rules_ids():
    ids = known_drug_ids()
    assert {"ixabepilone", "cremophor", "castor-oil", "st-johns-wort", "nirmatrelvir", "nizatidine"} <= ids
    assert len(ids) == 67


def test_every_entry_has_a_source_and_codes_say_whether_they_were_verified():
    data = json.loads(DATA_FILE.read_text())
    assert data["version"]
    for drug, spec in data["drugs"].items():
        assert spec["source"] and spec["names"], drug
        assert all(isinstance(c["verified"], bool) for c in spec["codes"]), drug


def dose_of(dose_and_rate):
    return read_dose(model(medication_request(rxnorm("1726276"), status="draft",
                                              dosageInstruction=[{"doseAndRate": dose_and_rate}])))


@pytest.mark.parametrize(("quantity", "mg", "mg_per_m2"), [
    ({"value": 40, "unit": "mg/m2", "system": "http://unitsofmeasure.org", "code": "mg/m2"}, None, 40),
    ({"value": 66, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}, 66, None),
    ({"value": 0.066, "unit": "g", "system": "http://unitsofmeasure.org", "code": "g"}, 66, None),
])
def test_read_dose_units(quantity, mg, mg_per_m2):
    dose = dose_of([{"doseQuantity": quantity}])
    assert dose.problem is None and dose.mg == (pytest.approx(mg) if mg else None) and dose.mg_per_m2 == mg_per_m2


@pytest.mark.parametrize(("dose_and_rate", "problem"), [
    ([{"doseQuantity": {"value": 40, "unit": "mg/kg", "code": "mg/kg"}}], "unknown dose unit 'mg/kg'"),
    ([{"doseQuantity": {"unit": "mg", "code": "mg"}}], "the order has no dose quantity"),
    ([{"doseRange": {"low": {"value": 30, "code": "mg/m2"}}}], "no upper bound"),
    ([], "no dose quantity"),
])
def test_read_dose_problems(dose_and_rate, problem):
    dose = dose_of(dose_and_rate)
    assert dose.mg is None and dose.mg_per_m2 is None and problem in dose.problem


def test_fixture_doses():
    assert read_dose(fixture("medicationrequest-ixempra-rxnorm.json")).mg_per_m2 == 40
    ranged = read_dose(fixture("medicationrequest-name-only.json"))  # 30 to 40 mg/m2: its top is checked
    assert ranged.mg_per_m2 == 40 and ranged.problem is None
    no_dosage = model(medication_request(rxnorm("1726276"), status="draft"))
    assert read_dose(no_dosage).problem


# The raw pre-filter (resources._wanted) must agree with identify_concept, or a
# medication we have a rule for would be skipped unparsed.
_PREFILTER_CASES = [
    {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "21212"}]},  # clarithromycin
    {"coding": [{"system": "urn:oid:2.16.840.1.113883.6.88", "code": "21212"}]},  # RxNorm by OID
    {"coding": [{"system": NDC, "code": "0015-1910-12"}]},  # Ixempra kit NDC, dashed
    {"coding": [{"system": ATC, "code": "l01dc04"}]},  # ATC, lower case
    {"text": "Ketoconazole 200 mg tablet"},
    {"coding": [{"system": "http://snomed.info/sct", "code": "1", "display": "ITRACONAZOLE capsule"}]},
    {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076",
                 "display": "lisinopril 10 MG Oral Tablet"}]},
    {"text": "metformin 500 mg"},
    {"text": "St John's wort"},
    {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076"}],
     "text": "home meds incl. rifampin"},
]


@pytest.mark.parametrize("value", _PREFILTER_CASES)
def test_raw_prefilter_agrees_with_identify_concept(value):
    parsed = model(medication_request(value)).medicationCodeableConcept
    assert may_name_known_drug(value) == bool(identify_concept(parsed)[0])


def test_raw_prefilter_keeps_every_code_of_drugs_json():
    data = json.loads(DATA_FILE.read_text())
    checked = 0
    for drug_id, entry in data["drugs"].items():
        for coding in entry.get("codes", []):
            system = {"rxnorm": RXNORM, "ndc": NDC, "atc": ATC}[coding["system"]]
            assert may_name_known_drug({"coding": [{"system": system, "code": coding["code"]}]}), drug_id
            checked += 1
    assert checked >= 40  # every drug with a code in the file; most also match by name


@pytest.mark.parametrize("value", ["a string", {"coding": "not a list"}, {"coding": ["not an object"]}])
def test_raw_prefilter_keeps_malformed_concepts_so_the_parser_reports_them(value):
    assert may_name_known_drug(value)


# -- issue 12: every dose, route and form, course end ---------------------------------------------------

from fhir_mappings.drugs import course_end, exposure_of  # noqa: E402

UCUM_SYSTEM = "http://unitsofmeasure.org"
DOSE_RATE = "http://terminology.hl7.org/CodeSystem/dose-rate-type"


def doses_of(*instructions):
    return read_doses(model(medication_request(rxnorm("1726276"), status="draft", dosageInstruction=list(instructions))))


def test_every_dose_line_is_read_with_its_type():
    doses = doses_of({"doseAndRate": [
        {"type": {"coding": [{"system": DOSE_RATE, "code": "ordered"}]}, "doseQuantity": {"value": 40, "unit": "mg/m²"}},
        {"type": {"coding": [{"system": DOSE_RATE, "code": "calculated"}]},
         "doseQuantity": {"value": 120, "unit": "mg", "system": UCUM_SYSTEM, "code": "mg"}},
    ]}, {"doseAndRate": [{"doseRange": {"low": {"value": 30, "code": "mg/m2"}, "high": {"value": 35, "code": "mg/m2"}}}]})
    assert [(d.kind, d.mg, d.mg_per_m2) for d in doses] == [
        ("ordered", None, 40), ("calculated", 120, None), ("range, upper bound", None, 35)]


@pytest.mark.parametrize("unit", ["mg/m2", "mg/m²", "mg/m^2", "MG/M2", "mg/(m2)", "mg / m2"])
def test_mg_per_m2_spellings(unit):
    (dose,) = doses_of({"doseAndRate": [{"doseQuantity": {"value": 40, "unit": unit}}]})
    assert dose.mg_per_m2 == 40 and dose.problem is None


def test_sandbox_prefill_is_unreadable_not_guessed():
    (dose,) = doses_of({"doseAndRate": [{"doseQuantity": {"value": 1, "unit": "{pill}", "code": "{pill}"}}]})
    assert dose.mg is None and dose.mg_per_m2 is None and dose.problem == "unknown dose unit '{pill}'"


def route(code, display):
    return {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]}


@pytest.mark.parametrize(("text", "dosage", "expected"), [
    ("ketoconazole 20 MG/ML Medicated Shampoo", None, "local"),
    ("dexamethasone 1 MG/ML Ophthalmic Suspension", None, "local"),
    ("miconazole 20 MG/ML Vaginal Cream", None, "local"),
    ("ketoconazole 200 MG Oral Tablet", None, "systemic"),
    ("miconazole 50 MG Buccal Tablet", None, "systemic"),
    ("ketoconazole", {"route": route("6064005", "Topical route")}, "local"),
    ("ketoconazole", {"route": route("26643006", "Oral route")}, "systemic"),
    ("ketoconazole", {"route": {"text": "PO"}}, "systemic"),
    ("ketoconazole 2% cream", {"route": route("26643006", "Oral route")}, "systemic"),  # conflicting: conservative
    ("miconazole rectal suppository", {"route": route("37161004", "Rectal route")}, None),  # rectal: form decides
    ("ketoconazole", None, None),
])
def test_exposure_from_route_and_dose_form(text, dosage, expected):
    concept = {"coding": [{"system": RXNORM, "code": "6135", "display": "ketoconazole"}], "text": text}
    order = model(medication_request(concept, dosageInstruction=[dosage] if dosage else None))
    exposure, basis = exposure_of(order)
    assert exposure == expected
    assert (basis is None) is (expected is None)


def test_course_end_from_bounds_duration_and_supply():
    bounded = model(medication_request(rxnorm("21212"), authoredOn="2026-11-01", dosageInstruction=[
        {"timing": {"repeat": {"boundsDuration": {"value": 10, "unit": "days", "code": "d"}}}}]))
    assert course_end(bounded)[0].isoformat().startswith("2026-11-11")
    supplied = model(medication_request(rxnorm("21212"), authoredOn="2026-07-01", dispenseRequest={
        "expectedSupplyDuration": {"value": 2, "unit": "wk", "code": "wk"}}))
    end, basis = course_end(supplied)
    assert end.isoformat().startswith("2026-07-15") and basis == "14-day supply from 2026-07-01"
    assert course_end(model(medication_request(rxnorm("21212")))) == (None, None)
