"""Issue 12 over HTTP: clinical data coded the way EHRs code it.

Each test starts from a complete order-sign request in ``tests/fixtures/http/``
(built from the test patients), changes only the FHIR the case is about, and
asserts the exact (rule, indicator) pairs the EHR gets back. Expectations come
from the label [L] and shared/clinical/ixabepilone.md, codes from
fhir_mappings/data/codes.json's cited sources (eCQM Pregnancy value set,
CMS ICD-10-CM titles, FHIR route codes). FIXED_NOW is 2026-11-25T15:00Z.
"""
from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.cds_services.test_rules_http import HTTP, call, card_for, pairs
from tests.conftest import load_json

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
PREGNANCY = ("pregnancy", "critical")


def body(name: str) -> dict[str, Any]:
    return copy.deepcopy(load_json(HTTP / f"{name}.json"))


def patient(req: dict[str, Any]) -> str:
    return req["context"]["patientId"]


def add(req: dict[str, Any], key: str, resource: dict[str, Any]) -> dict[str, Any]:
    resource.setdefault("subject" if resource["resourceType"] != "AllergyIntolerance" else "patient",
                        {"reference": f"Patient/{patient(req)}"})
    bundle = req["prefetch"][key]
    bundle.setdefault("entry", []).append(
        {"fullUrl": f"https://ehr.example.org/fhir/{resource['resourceType']}/{resource['id']}", "resource": resource})
    bundle["total"] = len(bundle["entry"])
    return resource


def condition(cid: str, system: str, code: str, display: str, *, clinical: str = "active",
              onset: str = "2026-10-01", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid,
            "clinicalStatus": {"coding": [{"system": CLINICAL, "code": clinical}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                               "code": "confirmed"}]},
            "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display},
            "onsetDateTime": onset, **extra}


def observation(oid: str, loinc: str, when: str, **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": loinc}]}, "effectiveDateTime": when, **value}


def hcg(oid: str, when: str, positive: bool) -> dict[str, Any]:
    answer = {"system": SNOMED, "code": "10828004", "display": "Positive"} if positive else \
        {"system": SNOMED, "code": "260385009", "display": "Negative"}
    return observation(oid, "2106-3", when, valueCodeableConcept={"coding": [answer]})


def medication(mid: str, code: str, display: str, text: str, *, status: str = "active", intent: str = "order",
               authored: str = "2026-11-15", route: tuple[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "resourceType": "MedicationRequest", "id": mid, "status": status, "intent": intent,
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code, "display": display}], "text": text},
        "authoredOn": authored, **extra}
    if route is not None:
        order.setdefault("dosageInstruction", [{"text": text}])[0]["route"] = {
            "coding": [{"system": SNOMED, "code": route[0], "display": route[1]}]}
    return order


def draft(req: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    resource.setdefault("subject", {"reference": f"Patient/{patient(req)}"})
    resource.setdefault("status", "draft")
    req["context"]["draftOrders"]["entry"].append({"resource": resource})
    return resource


def ixabepilone_dose(req: dict[str, Any]) -> dict[str, Any]:
    return req["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"][0]


# -- 1. pregnancy as coded in practice -------------------------------------------------------------


@pytest.mark.parametrize(("system", "code", "display"), [
    (SNOMED, "72892002", "Normal pregnancy"),  # eCQM Pregnancy value set; Synthea's code
    (SNOMED, "77386006", "Pregnancy"),
    (SNOMED, "47200007", "High risk pregnancy"),  # eCQM Pregnancy value set
    (ICD10, "Z34.90", "Encounter for supervision of normal pregnancy, unspecified, unspecified trimester"),
    (ICD10, "Z33.1", "Pregnant state, incidental"),
    (ICD10, "Z3A.20", "20 weeks gestation of pregnancy"),
    (ICD10, "O09.523", "Supervision of elderly multigravida, third trimester"),
    (ICD10, "O9A.112", "Malignant neoplasm complicating pregnancy, second trimester"),
    (ICD10, "O00.101", "Right tubal pregnancy without intrauterine pregnancy"),
])
def test_pregnancy_coded_on_the_problem_list_is_critical(client, system, code, display):
    req = body("clean")
    req["prefetch"]["reproductive"]["entry"] = []  # ixa-clean's negative hCG (3 days ago) would clear it
    req["prefetch"]["reproductive"]["total"] = 0
    add(req, "conditions", condition("preg", system, code, display))
    cards = call(client, req)
    assert pairs(cards) == [PREGNANCY]
    assert card_for(cards, "pregnancy")["summary"].startswith(f"Pregnancy: {display[:20]}")


@pytest.mark.parametrize(("system", "code", "display"), [
    (ICD10, "O9A.13", "Malignant neoplasm complicating the puerperium"),  # CMS title: after delivery
    (ICD10, "O99.03", "Anemia complicating the puerperium"),
    (ICD10, "O24.43", "Gestational diabetes mellitus in the puerperium"),
    (ICD10, "Z39.2", "Encounter for routine postpartum follow-up"),
    (ICD10, "O80", "Encounter for full-term uncomplicated delivery"),
    (ICD10, "Z33.2", "Encounter for elective termination of pregnancy"),
])
def test_childbirth_and_puerperium_codes_are_not_pregnancy(client, system, code, display):
    req = body("clean")
    add(req, "conditions", condition("pp", system, code, display))
    assert call(client, req) == []


def test_postpartum_patient_with_old_positive_test_and_resolved_pregnancy_gets_no_card(client):
    """ixa-postpartum: Normal pregnancy resolved (abated 60 d ago), O9A.13, Z39.2, a positive hCG 300 d ago."""
    assert call(client, body("pregnancy-postpartum")) == []


@pytest.mark.parametrize(("extra", "counted"), [
    ({}, True),
    ({"abatementDateTime": "2026-11-20"}, False),  # abated in the past: over (issue 12 item 1)
    ({"abatementDateTime": "2027-03-01"}, True),  # an abatement still ahead is not an end yet
    ({"abatementString": "delivered"}, False),
])
def test_abatement_ends_an_active_pregnancy_condition(client, extra, counted):
    req = body("clean")
    req["prefetch"]["reproductive"]["entry"] = []
    req["prefetch"]["reproductive"]["total"] = 0
    add(req, "conditions", condition("preg", SNOMED, "72892002", "Normal pregnancy", **extra))
    assert (PREGNANCY in pairs(call(client, req))) is counted


@pytest.mark.parametrize("clinical", ["resolved", "inactive", "remission"])
def test_resolved_or_inactive_pregnancy_condition_does_not_count(client, clinical):
    req = body("clean")
    add(req, "conditions", condition("preg", SNOMED, "72892002", "Normal pregnancy", clinical=clinical))
    assert call(client, req) == []


@pytest.mark.parametrize(("answer", "counted"), [
    ({"valueString": "Pregnant"}, True),
    ({"valueCodeableConcept": {"text": "pregnant."}}, True),
    ({"valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA15173-0", "display": "Pregnant"}]}}, True),
    ({"valueString": "Not pregnant"}, False),
    ({"valueString": "possibly pregnant"}, False),  # not an answer we can read as yes: no guess
])
def test_pregnancy_status_answered_by_code_or_plain_text(client, answer, counted):
    req = body("clean")
    req["prefetch"]["reproductive"]["entry"] = []  # leave out ixa-clean's negative hCG
    req["prefetch"]["reproductive"]["total"] = 0
    add(req, "reproductive", observation("status", "82810-3", "2026-11-20T10:00:00Z", **answer))
    assert (PREGNANCY in pairs(call(client, req))) is counted


@pytest.mark.parametrize(("when", "counted"), [
    ("2026-11-05T15:00:00Z", True),  # 20 days ago, nothing newer: still pregnant (issue 12 item 1)
    ("2026-01-25T15:00:00Z", True),  # 304 days: about 10 months [ixabepilone.md, Lab freshness]
    ("2026-01-24T15:00:00Z", False),  # 305 days
])
def test_positive_hcg_stays_evidence_for_about_ten_months(client, when, counted):
    req = body("clean")
    req["prefetch"]["reproductive"]["entry"] = []
    req["prefetch"]["reproductive"]["total"] = 0
    add(req, "reproductive", hcg("pos", when, positive=True))
    assert (PREGNANCY in pairs(call(client, req))) is counted


def test_a_newer_negative_test_clears_an_older_positive_but_not_a_newer_one(client):
    req = body("pregnancy-hcg-positive-20d")  # positive 2026-11-05
    add(req, "reproductive", hcg("neg-newer", "2026-11-15T09:00:00Z", positive=False))
    assert call(client, req) == []
    req = body("pregnancy-hcg-positive-20d")
    add(req, "reproductive", hcg("neg-older", "2026-10-20T09:00:00Z", positive=False))
    assert pairs(call(client, req)) == [PREGNANCY]


@pytest.mark.parametrize(("recorded", "counted"), [
    ("2026-11-24T09:00:00Z", True),  # recorded after ixa-clean's negative hCG of 2026-11-22 15:00: newer evidence
    ("2026-11-22T16:00:00Z", True),  # an hour after the negative test
    ("2026-11-22T15:00:00Z", False),  # at the same moment: not newer, so the negative clears it
    ("2026-11-20T09:00:00Z", False),  # recorded before the negative test
])
def test_pregnancy_recorded_after_a_negative_test_counts_whatever_its_onset(client, recorded, counted):
    """Onset is the pregnancy's first day (2026-10-01), often before an early negative test; what the negative
    can clear is a record older than itself (issue 12 item 1), so the Condition's recordedDate counts."""
    req = body("clean")  # negative urine hCG 2026-11-22T15:00Z
    add(req, "conditions", condition("preg", SNOMED, "72892002", "Normal pregnancy", onset="2026-10-01",
                                     recordedDate=recorded))
    assert (PREGNANCY in pairs(call(client, req))) is counted


def serum_hcg(oid: str, when: str, value: float, *, comparator: str | None = None,
              high: float | None = None) -> dict[str, Any]:
    """A quantitative serum hCG (LOINC 19080-1) in m[IU]/mL, with the lab's reference range if given."""
    quantity: dict[str, Any] = {"value": value, "unit": "mIU/mL", "system": UCUM, "code": "m[IU]/mL"}
    if comparator:
        quantity["comparator"] = comparator
    obs = observation(oid, "19080-1", when, valueQuantity=quantity)
    if high is not None:
        obs["referenceRange"] = [{"high": {"value": high, "unit": "mIU/mL", "system": UCUM, "code": "m[IU]/mL"}}]
    return obs


@pytest.mark.parametrize(("value", "extra", "cleared"), [
    (3, {"high": 5}, True),  # under the lab's own upper limit: negative
    (5, {"high": 5}, True),  # at it
    (6, {"high": 5}, False),  # just above it and under 25 mIU/mL: equivocal, clears nothing
    (20, {}, False),  # no range: not positive is not negative
    (5, {"comparator": "<", "high": 5}, True),  # "<5" with the lab's range up to 5
    (5, {"comparator": "<"}, False),  # "<5" without a range: the lab's cut-off is unknown
])
def test_a_quantitative_hcg_clears_older_evidence_only_within_the_lab_s_own_range(client, value, extra, cleared):
    req = body("pregnancy-hcg-positive-20d")  # positive urine hCG 2026-11-05
    add(req, "reproductive", serum_hcg("quant", "2026-11-20T09:00:00Z", value, **extra))
    assert (PREGNANCY in pairs(call(client, req))) is (not cleared)


@pytest.mark.parametrize(("value", "comparator", "positive"), [
    (25, None, False), (26, None, True),  # > 25 mIU/mL [codes.md, hCG]
    (1000, ">", True),  # a lower bound above the cut-off is positive
    (20, ">", False),  # a lower bound under it says neither
])
def test_quantitative_hcg_positive_above_25_or_as_a_bound_above_it(client, value, comparator, positive):
    req = body("clean")
    req["prefetch"]["reproductive"]["entry"] = []
    req["prefetch"]["reproductive"]["total"] = 0
    add(req, "reproductive", serum_hcg("quant", "2026-11-20T09:00:00Z", value, comparator=comparator))
    assert (PREGNANCY in pairs(call(client, req))) is positive


def test_a_recorded_delivery_ends_an_older_positive_test(client):
    req = body("pregnancy-hcg-positive-20d")
    add(req, "conditions", condition("delivery", ICD10, "Z37.0", "Single live birth", onset="2026-11-18"))
    assert call(client, req) == []


def test_summary_names_the_evidence_used_and_its_date(client):
    card = card_for(call(client, body("pregnancy-hcg-positive-20d")), "pregnancy")
    assert card["summary"] == ("Pregnancy: Positive hCG test (LOINC 2106-3) 2026-11-05: ixabepilone "
                               "contraindicated (embryo-fetal toxicity)")


# -- 2. hypersensitivity by severity -------------------------------------------------------------------


def test_paclitaxel_anaphylaxis_is_critical_and_cancels_the_order(client):
    req = body("hypersensitivity-paclitaxel-anaphylaxis")
    card = card_for(call(client, req), "hypersensitivity")
    assert card["indicator"] == "critical" and card["summary"].startswith("Severe reaction to paclitaxel")
    (action,) = [a for s in card["suggestions"] for a in s["actions"]]
    assert action == {"type": "delete", "description": action["description"],
                      "resourceId": "MedicationRequest/draft-ixa-paclitaxel-anaphylaxis"}


@pytest.mark.parametrize("reaction", [
    {"severity": "severe", "manifestation": [{"text": "Bronchospasm"}]},
    {"manifestation": [{"coding": [{"system": SNOMED, "code": "39579001", "display": "Anaphylaxis"}]}]},
    {"manifestation": [{"text": "anaphylactic shock"}]},
])
def test_each_sign_of_a_severe_reaction_alone_makes_paclitaxel_critical(client, reaction):
    req = body("hypersensitivity-paclitaxel")  # criticality low, mild skin eruption: a warning as it stands
    allergy = req["prefetch"]["allergies"]["entry"][0]["resource"]
    allergy["reaction"] = [reaction]
    assert pairs(call(client, req)) == [("hypersensitivity", "critical")]


@pytest.mark.parametrize("code", [
    {"coding": [{"system": RXNORM, "code": "3008", "display": "cyclosporine"}], "text": "cyclosporine (Neoral)"},
    {"coding": [{"system": RXNORM, "code": "3008", "display": "cyclosporine"}], "text": "Sandimmune injection"},
    {"text": "teniposide (Vumon)"},  # no RxNorm code confirmed: matched by name
])
@pytest.mark.parametrize(("criticality", "reaction", "indicator"), [
    ("high", {"manifestation": [{"coding": [{"system": SNOMED, "code": "39579001", "display": "Anaphylaxis"}]}],
              "severity": "severe"}, "critical"),  # severe reaction to an agent with Cremophor EL or a derivative [L §4]
    ("low", {"manifestation": [{"coding": [{"system": SNOMED, "code": "271807003", "display": "Eruption of skin"}]}],
             "severity": "mild"}, "warning"),  # not the severe reaction L §4 names
    (None, {"manifestation": [{"text": "rash"}]}, "warning"),  # severity unknown
])
def test_other_cremophor_agents_by_severity(client, code, criticality, reaction, indicator):
    req = body("hypersensitivity-paclitaxel")
    allergy = req["prefetch"]["allergies"]["entry"][0]["resource"]
    allergy["code"] = code
    allergy["reaction"] = [reaction]
    if criticality is None:
        allergy.pop("criticality")
    else:
        allergy["criticality"] = criticality
    card = card_for(call(client, req), "hypersensitivity")
    assert card["indicator"] == indicator
    types = {a["type"] for s in card["suggestions"] for a in s["actions"]}
    assert types == ({"delete"} if indicator == "critical" else {"create"})


def test_mild_paclitaxel_reaction_is_a_warning_that_creates_the_corticosteroid(client):
    card = card_for(call(client, body("hypersensitivity-paclitaxel")), "hypersensitivity")
    assert card["indicator"] == "warning"
    (action,) = [a for s in card["suggestions"] for a in s["actions"]]
    assert action["type"] == "create"
    assert action["resource"]["medicationCodeableConcept"]["coding"][0]["code"] == "1116927"


def test_prior_ixabepilone_reaction_warning_creates_dexamethasone_20_mg_iv_30_minutes_before(client):
    req = body("hypersensitivity-prior-ixabepilone")
    card = card_for(call(client, req), "hypersensitivity")
    assert card["summary"] == "Prior reaction to ixabepilone: give corticosteroid premedication (dexamethasone 20 mg IV)"
    (suggestion,) = card["suggestions"]
    (action,) = suggestion["actions"]
    order = action["resource"]
    assert action["type"] == "create" and order["resourceType"] == "MedicationRequest"
    assert (order["status"], order["intent"]) == ("draft", "order")
    assert order["subject"] == {"reference": "Patient/ixa-prior-ixabepilone-reaction"}
    dosage = order["dosageInstruction"][0]
    assert dosage["doseAndRate"] == [{"doseQuantity": {"value": 20, "unit": "mg", "system": UCUM, "code": "mg"}}]
    assert dosage["route"]["coding"] == [{"system": SNOMED, "code": "47625008", "display": "Intravenous route"}]
    assert "30 minutes before" in dosage["text"]


def test_dexamethasone_eye_drops_do_not_stand_in_for_the_corticosteroid_premedication(client):
    """A local form gives no systemic exposure (issue 12 item 3): the warning still creates dexamethasone 20 mg IV
    [L §2.3]; a systemic dexamethasone draft does stand in, and the card then suggests nothing."""
    req = body("hypersensitivity-prior-ixabepilone")
    add(req, "medicationRequests", medication("dex-eye", "3264", "dexamethasone",
                                              "dexamethasone 1 MG/ML Ophthalmic Suspension",
                                              route=("54485002", "Ophthalmic route")))
    card = card_for(call(client, req), "hypersensitivity")
    (action,) = [a for s in card["suggestions"] for a in s["actions"]]
    assert action["type"] == "create"
    assert action["resource"]["medicationCodeableConcept"]["coding"][0]["code"] == "1116927"
    draft(req, medication("draft-dex", "1116927", "dexamethasone phosphate 4 MG/ML Injectable Solution",
                          "dexamethasone 20 mg IV 30 minutes before ixabepilone", status="draft",
                          route=("47625008", "Intravenous route")))
    card = card_for(call(client, req), "hypersensitivity")
    assert card["indicator"] == "warning" and not card.get("suggestions")
    assert "Corticosteroid already ordered: dexamethasone 20 mg IV 30 minutes before ixabepilone." in card["detail"]


def test_severe_prior_ixabepilone_reaction_is_critical_with_only_a_cancel(client):
    req = body("hypersensitivity-prior-ixabepilone")
    allergy = req["prefetch"]["allergies"]["entry"][0]["resource"]
    allergy["criticality"] = "high"
    card = card_for(call(client, req), "hypersensitivity")
    assert card["indicator"] == "critical"
    assert {a["type"] for s in card["suggestions"] for a in s["actions"]} == {"delete"}
    assert "premedication" not in card["summary"]


# -- 3. route and dose form -----------------------------------------------------------------------------


def test_ketoconazole_shampoo_and_dexamethasone_eye_drops_raise_nothing(client):
    assert call(client, body("cyp3a4-local-forms")) == []


def test_local_forms_are_named_as_not_counted_when_a_systemic_one_fires(client):
    req = body("cyp3a4-local-forms")
    add(req, "medicationRequests", medication("keto-tab", "6135", "ketoconazole", "ketoconazole 200 MG Oral Tablet",
                                              route=("26643006", "Oral route")))
    cards = call(client, req)
    assert sorted(pairs(cards)) == [("cyp3a4-strong-inhibitor", "warning"), ("dose-check", "warning")]
    detail = card_for(cards, "cyp3a4-strong-inhibitor")["detail"]
    assert "**ketoconazole 200 MG Oral Tablet**" in detail
    assert "Not counted (local use" in detail
    assert "ketoconazole 20 MG/ML Medicated Shampoo" in detail and "route Topical route (SNOMED 6064005)" in detail


@pytest.mark.parametrize(("route", "text", "counted"), [
    ({"coding": [{"system": SNOMED, "code": "6064005", "display": "Topical route"}]}, "ketoconazole", False),
    ({"text": "topical"}, "ketoconazole", False),
    (None, "ketoconazole 2% cream", False),
    (None, "ketoconazole 20 MG/ML Medicated Shampoo", False),
    ({"coding": [{"system": SNOMED, "code": "16857009", "display": "Vaginal route"}]}, "ketoconazole", False),
    ({"coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}]}, "ketoconazole", True),
    (None, "ketoconazole", True),  # route and form not recorded: counted as systemic
])
def test_strong_inhibitor_counts_only_when_systemic(client, route, text, counted):
    req = body("clean")
    order = add(req, "medicationRequests", medication("keto", "6135", "ketoconazole", text))
    if route is not None:
        order["dosageInstruction"] = [{"text": "as directed", "route": route}]
    assert (("cyp3a4-strong-inhibitor", "warning") in pairs(call(client, req))) is counted


@pytest.mark.parametrize(("codings", "text", "route"), [
    # ciprofloxacin (moderate inhibitor [F]) with dexamethasone (strong inducer [L §7]) as ear drops (Ciprodex)
    ([("2551", "ciprofloxacin"), ("3264", "dexamethasone")], "ciprofloxacin 3 MG/ML / dexamethasone 1 MG/ML Otic Suspension",
     ("10547007", "Otic route")),
    ([("6932", "miconazole")], "miconazole nitrate 100 MG Vaginal Suppository", ("16857009", "Vaginal route")),
    ([("6135", "ketoconazole")], "ketoconazole 20 MG/ML Topical Cream", None),  # the form in the product name only
])
def test_otic_vaginal_and_cream_forms_raise_no_cyp3a4_card(client, codings, text, route):
    req = body("clean")
    order = add(req, "medicationRequests", medication("local", codings[0][0], codings[0][1], text, route=route))
    order["medicationCodeableConcept"]["coding"] = [{"system": RXNORM, "code": c, "display": d} for c, d in codings]
    assert call(client, req) == []


def test_dexamethasone_eye_drops_do_not_count_as_an_inducer_but_an_oral_course_does(client):
    req = body("clean")
    add(req, "medicationRequests", medication("dex-eye", "3264", "dexamethasone",
                                              "dexamethasone 1 MG/ML Ophthalmic Suspension",
                                              route=("54485002", "Ophthalmic route")))
    assert call(client, req) == []
    add(req, "medicationRequests", medication("dex-po", "3264", "dexamethasone", "dexamethasone 4 MG Oral Tablet",
                                              route=("26643006", "Oral route")))
    assert pairs(call(client, req)) == [("cyp3a4-strong-inducer", "warning")]


def test_dose_form_read_from_a_referenced_medication_form(client):
    req = body("clean")
    add(req, "medicationRequests", {"resourceType": "MedicationRequest", "id": "keto-ref", "status": "active",
                                    "intent": "order", "medicationReference": {"reference": "Medication/keto-sh"},
                                    "authoredOn": "2026-11-15"})
    req["prefetch"]["medicationRequests"]["entry"].append({"resource": {
        "resourceType": "Medication", "id": "keto-sh",
        "code": {"coding": [{"system": RXNORM, "code": "6135", "display": "ketoconazole"}]},
        "form": {"coding": [{"system": SNOMED, "code": "421637006", "display": "Shampoo"}], "text": "Shampoo"}},
        "search": {"mode": "include"}})
    assert call(client, req) == []


def test_miconazole_buccal_is_systemic_and_listed_as_a_moderate_inhibitor(client):
    req = body("clean")
    add(req, "medicationRequests", medication("mic", "6932", "miconazole", "miconazole 50 MG Buccal Tablet",
                                              route=("54471007", "Buccal route")))
    cards = call(client, req)
    assert pairs(cards) == [("cyp3a4-other", "info")]
    assert "route Buccal route (SNOMED 54471007)" in cards[0]["detail"]


# -- 4. recent stops, plans and long-open courses --------------------------------------------------------


def stopped_ketoconazole(end: str) -> dict[str, Any]:
    return medication("keto", "6135", "ketoconazole", "ketoconazole 200 MG Oral Tablet", status="completed",
                      authored="2026-11-01", dosageInstruction=[{
                          "text": "200 mg by mouth daily", "timing": {"repeat": {"boundsPeriod": {
                              "start": "2026-11-01T09:00:00Z", "end": end}}}}])


@pytest.mark.parametrize(("end", "counted"), [
    ("2026-11-22T15:00:00Z", True),  # 3 days ago (issue 12)
    ("2026-11-18T15:00:00Z", True),  # exactly 7 days: the label's about 1 week [L §7]
    ("2026-11-18T14:00:00Z", False),  # 7 days and 1 hour
])
def test_strong_inhibitor_stopped_within_a_week_still_counts(client, end, counted):
    req = body("clean")
    add(req, "medicationRequests", stopped_ketoconazole(end))
    assert (("cyp3a4-strong-inhibitor", "warning") in pairs(call(client, req))) is counted


def test_stopped_inhibitor_card_says_when_to_return_to_the_full_dose(client):
    cards = call(client, body("cyp3a4-strong-inhibitor-stopped"))
    card = card_for(cards, "cyp3a4-strong-inhibitor")
    assert card["summary"] == ("Strong CYP3A4 inhibitor ketoconazole stopped 2026-11-22: keep ixabepilone at "
                               "20 mg/m2 until about 1 week after")
    dose = card["suggestions"][0]["actions"][0]["resource"]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    assert dose["value"] == 20  # [L §7]


def test_completed_statement_with_an_end_date_counts_too(client):
    req = body("clean")
    add(req, "medicationStatements", {
        "resourceType": "MedicationStatement", "id": "itra", "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "28031", "display": "itraconazole"}],
                                      "text": "itraconazole 100 MG Oral Capsule"},
        "effectivePeriod": {"start": "2026-11-10", "end": "2026-11-21"}})
    assert ("cyp3a4-strong-inhibitor", "warning") in pairs(call(client, req))


@pytest.mark.parametrize(("intent", "counted"), [
    ("plan", True), ("proposal", True), ("order", True), ("original-order", True), ("option", False),
])
def test_active_plan_proposal_or_order_is_exposure(client, intent, counted):
    req = body("clean")
    add(req, "medicationRequests", medication("clar", "21212", "clarithromycin", "clarithromycin 500 MG Oral Tablet",
                                              intent=intent))
    assert (("cyp3a4-strong-inhibitor", "warning") in pairs(call(client, req))) is counted


def test_long_open_short_course_still_warns_and_says_so(client):
    req = body("clean")
    add(req, "medicationRequests", medication(
        "clar-old", "21212", "clarithromycin", "clarithromycin 500 MG Oral Tablet", authored="2026-07-01",
        dispenseRequest={"expectedSupplyDuration": {"value": 10, "unit": "days", "system": UCUM, "code": "d"}}))
    card = card_for(call(client, req), "cyp3a4-strong-inhibitor")
    assert "still an active order, but its course ended 2026-07-11 (10-day supply from 2026-07-01" in card["detail"]


# -- 5. every dose on the order ------------------------------------------------------------------------


@pytest.mark.parametrize(("unit", "value", "fires"), [
    ("mg/m²", 44, False), ("mg/m²", 44.1, True),  # 40 mg/m2 [L §2], flagged above +10% [project setting]
    ("mg/m^2", 44, False), ("mg/m^2", 44.1, True),
    ("mg/m2", 44.1, True),
])
def test_mg_per_m2_spellings_are_read_alike(client, unit, value, fires):
    req = body("clean")
    ixabepilone_dose(req)["doseAndRate"] = [{"doseQuantity": {"value": value, "unit": unit}}]
    assert ((("dose-check", "warning") in pairs(call(client, req))) is fires)


def test_calculated_dose_beside_the_ordered_dose_is_checked(client):
    card = card_for(call(client, body("dose-check-calculated")), "dose-check")
    assert card["summary"] == "Ixabepilone 120 mg > 72 mg (40 mg/m2 x 1.8 m2) by 67%"


def test_the_highest_of_several_doses_is_reported(client):
    req = body("clean")  # BSA 1.66 m2: 40 mg/m2 is 66.3 mg, flagged above 73 mg
    ixabepilone_dose(req)["doseAndRate"] = [
        {"doseQuantity": {"value": 40, "unit": "mg/m2", "system": UCUM, "code": "mg/m2"}},
        {"doseRange": {"low": {"value": 60, "unit": "mg", "code": "mg"}, "high": {"value": 90, "unit": "mg", "code": "mg"}}},
    ]
    card = card_for(call(client, req), "dose-check")
    assert card["summary"].startswith("Ixabepilone 90 mg > 66.3 mg")


def test_second_dosage_instruction_is_checked_too(client):
    req = body("clean")
    order = req["context"]["draftOrders"]["entry"][0]["resource"]
    order["dosageInstruction"].append({"text": "cycle 2", "doseAndRate": [
        {"doseQuantity": {"value": 60, "unit": "mg/m2", "system": UCUM, "code": "mg/m2"}}]})
    assert pairs(call(client, req)) == [("dose-check", "warning")]


# -- 6. a patient already on ixabepilone --------------------------------------------------------------


def regimen_body(hook: str = "order-sign") -> dict[str, Any]:
    return body("regimen-clarithromycin" if hook == "order-sign" else "regimen-clarithromycin-order-select")


def replace_draft(req: dict[str, Any], resource: dict[str, Any]) -> None:
    resource.setdefault("subject", {"reference": f"Patient/{patient(req)}"})
    req["context"]["draftOrders"]["entry"] = [{"resource": resource}]
    if req["hook"] == "order-select":
        req["context"]["selections"] = [f"MedicationRequest/{resource['id']}"]


def regimen(req: dict[str, Any]) -> dict[str, Any]:
    """The active ixabepilone order in the record of ixa-on-regimen-clarithromycin."""
    return next(e["resource"] for e in req["prefetch"]["medicationRequests"]["entry"]
                if e["resource"]["id"].endswith("-ixabepilone"))


@pytest.mark.parametrize("hook", ["order-sign", "order-select"])
def test_clarithromycin_for_a_patient_on_ixabepilone_names_the_regimen_and_removes_the_draft(client, hook):
    cards = call(client, regimen_body(hook))
    card = card_for(cards, "cyp3a4-strong-inhibitor")
    assert card["summary"] == ("Strong CYP3A4 inhibitor clarithromycin for a patient on ixabepilone (active order): "
                               "avoid, or use 20 mg/m2")
    (action,) = [a for s in card["suggestions"] for a in s["actions"]]
    assert action["type"] == "delete" and action["resourceId"] == "MedicationRequest/draft-ixa-on-regimen-clarithromycin"


def test_rifampin_for_a_patient_given_ixabepilone_15_days_ago(client):
    req = regimen_body()
    regimen(req).update(status="completed", authoredOn="2026-11-10T09:00:00Z")
    replace_draft(req, medication("draft-rif", "9384", "rifampin", "rifampin 300 MG Oral Capsule", status="draft",
                                  route=("26643006", "Oral route")))
    card = card_for(call(client, req), "cyp3a4-strong-inducer")
    assert card["summary"].startswith("Strong CYP3A4 inducer rifampin for a patient on ixabepilone (ixabepilone given 2026-11-10)")


@pytest.mark.parametrize(("authored", "on_it"), [
    ("2026-11-04T15:00:00Z", True),  # 21 days: one 3-week cycle [L §2.1]
    ("2026-11-04T14:00:00Z", False),
])
def test_ixabepilone_given_within_one_cycle_counts(client, authored, on_it):
    req = regimen_body()
    regimen(req).update(status="completed", authoredOn=authored)
    assert (("cyp3a4-strong-inhibitor", "warning") in pairs(call(client, req))) is on_it


def test_live_vaccine_ordered_for_a_patient_on_ixabepilone(client):
    req = regimen_body()
    replace_draft(req, {"resourceType": "MedicationRequest", "id": "draft-mmr", "status": "draft", "intent": "order",
                        "medicationCodeableConcept": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "03",
                                                                  "display": "MMR"}]}})
    cards = call(client, req)
    assert pairs(cards) == [("live-vaccine", "warning")]
    assert cards[0]["suggestions"][0]["actions"][0]["resourceId"] == "MedicationRequest/draft-mmr"


@pytest.mark.parametrize("resource", [
    medication("draft-apap", "161", "acetaminophen", "acetaminophen 325 MG Oral Tablet", status="draft"),
    medication("draft-dex", "3264", "dexamethasone", "dexamethasone 4 MG Oral Tablet", status="draft"),  # premedication
    medication("draft-keto-sh", "6135", "ketoconazole", "ketoconazole 20 MG/ML Medicated Shampoo", status="draft"),
    medication("draft-ery", "4053", "erythromycin", "erythromycin 250 MG Oral Tablet", status="draft"),  # moderate
])
def test_other_orders_for_a_patient_on_ixabepilone_get_no_card(client, resource):
    req = regimen_body()
    replace_draft(req, copy.deepcopy(resource))
    assert call(client, req) == []


def test_clarithromycin_for_a_patient_not_on_ixabepilone_gets_no_card(client):
    req = regimen_body()
    req["prefetch"]["medicationRequests"]["entry"] = [
        e for e in req["prefetch"]["medicationRequests"]["entry"] if e["resource"] is not regimen(req)]
    assert call(client, req) == []


def test_order_select_of_another_order_beside_clarithromycin_gets_no_card(client):
    req = regimen_body("order-select")
    draft(req, medication("draft-apap", "161", "acetaminophen", "acetaminophen 325 MG Oral Tablet", status="draft"))
    req["context"]["selections"] = ["MedicationRequest/draft-apap"]
    assert call(client, req) == []


def test_discovery_says_it_checks_patients_already_on_ixabepilone(client):
    services = client.get("/cds-services").get_json()["services"]
    for service in services:
        assert "already on ixabepilone" in service["description"]
        assert "status=active,on-hold,completed,stopped" in service["prefetch"]["medicationRequests"]


# -- 7. order-select is for orders being written -----------------------------------------------------


@pytest.mark.parametrize(("quantity", "select", "sign"), [
    ({"value": 1, "unit": "{pill}", "code": "{pill}"}, [], [("dose-check", "warning")]),  # the sandbox pre-fill
    (None, [], [("dose-check", "warning")]),  # no dose yet
    ({"value": 60, "unit": "mg/m2", "system": UCUM, "code": "mg/m2"},
     [("dose-check", "warning")], [("dose-check", "warning")]),  # readable and too high: flagged at both
])
def test_unreadable_dose_is_reported_at_order_sign_only(client, quantity, select, sign):
    for hook, expected in (("order-select", select), ("order-sign", sign)):
        req = body("clean")
        req["hook"] = hook
        if hook == "order-select":
            req["context"]["selections"] = [f"MedicationRequest/{req['context']['draftOrders']['entry'][0]['resource']['id']}"]
        ixabepilone_dose(req)["doseAndRate"] = [{"doseQuantity": quantity}] if quantity else []
        assert pairs(call(client, req)) == expected, hook


def test_order_select_still_reports_other_findings_with_an_unfinished_dose(client):
    req = body("platelets-low-order-select")
    ixabepilone_dose(req)["doseAndRate"] = [{"doseQuantity": {"value": 1, "unit": "{pill}", "code": "{pill}"}}]
    assert pairs(call(client, req)) == [("platelets-low", "critical")]
