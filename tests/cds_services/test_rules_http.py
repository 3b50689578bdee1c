"""Every rule code end to end: a CDS Hooks request over HTTP, the cards an EHR gets back.

The requests are files in ``tests/fixtures/http/``: complete order-sign (and
order-select) requests whose prefetch holds the test patients' FHIR R4
resources (LOINC, SNOMED CT, RxNorm, CVX, UCUM), with dates fixed against
FIXED_NOW (2026-11-25T15:00Z). ``make_requests.py`` there says how they were
built. Each test asserts the exact set of (rule code, indicator) on the answer,
so a card that appears where it should not fails as loudly as one that is
missing; and that the card an EHR would show names its source and the data
that triggered it.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from cds_services.schemas import schema_errors
from tests.conftest import FIXTURES, load_json
from tests.support import markdown_text

HTTP = FIXTURES / "http"
SIGN = "/cds-services/ixabepilone-order-sign"
SELECT = "/cds-services/ixabepilone-order-select"
RULE_SYSTEM = "urn:ixabepilone-cds:rules"
# The IXEMPRA label on DailyMed (setid from openFDA, see cds_services/knowledge/ixabepilone.json).
LABEL_URL = "https://dailymed.nlm.nih.gov/dailymed/drugInfo.cfm?setid=241f0b1e-8b95-470d-876f-bf1804daaf18"
FDA_CYP_TABLE_URL = (
    "https://www.fda.gov/drugs/drug-interactions-labeling/"
    "healthcare-professionals-fdas-examples-drugs-interact-cyp-enzymes-and-transporter-systems"
)
PATIENT_ARTICLE_URL = "https://www.verywellhealth.com/ixempra-ixabepilone-430559"

# The public contract of issue 3: EHRs filter on these codes.
RULE_CODES = frozenset({
    "neutrophils-low", "platelets-low", "hepatic-combination", "hepatic-monotherapy",
    "hepatic-impairment-condition", "hypersensitivity", "pregnancy", "breastfeeding",
    "cyp3a4-strong-inhibitor", "cyp3a4-strong-inducer", "cyp3a4-other", "labs-missing", "dose-check",
    "premedication-missing", "radiation-recall", "live-vaccine", "neuropathy-risk", "check-unavailable",
})


@dataclass(frozen=True)
class Case:
    fixture: str  # tests/fixtures/http/<fixture>.json
    cards: frozenset[tuple[str, str]]  # the exact (rule code, indicator) set expected
    rule: str  # the rule this request is about
    evidence: tuple[str, ...]  # text the rule's card detail must show (value, unit, date, record)
    url: str | None = LABEL_URL  # the rule's source (knowledge file): the label unless it cites another


def cards_of(*pairs: tuple[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(pairs)


CASES = [
    Case("neutrophils-low", cards_of(("neutrophils-low", "critical")), "neutrophils-low",
         ("ANC 1,200 cells/mm3 on 2026-11-24", "recorded as 1.2 10*3/uL", "< 1,500 cells/mm3",
          "Observation/ixa-anc-low-anc")),
    Case("neutrophils-low-wbc-only", cards_of(("neutrophils-low", "critical")), "neutrophils-low",
         ("WBC 1,400 cells/mm3 on 2026-11-24", "recorded as 1.4 10*3/uL", "< 1,500 cells/mm3",
          "WBC < 1,500 means ANC < 1,500")),
    Case("platelets-low", cards_of(("platelets-low", "critical")), "platelets-low",
         ("Platelets 80,000 cells/mm3 on 2026-11-24", "recorded as 80 10*3/uL", "< 100,000 cells/mm3",
          "Observation/ixa-platelets-low-plt")),
    Case("hepatic-combination", cards_of(("hepatic-combination", "critical")), "hepatic-combination",
         ("AST 120 U/L on 2026-11-24", "**3 x ULN**", "ULN 40 U/L (lab reference range)",
          "capecitabine 500 MG Oral Tablet", "2.5 x ULN")),
    Case("hepatic-monotherapy", cards_of(("hepatic-monotherapy", "warning"), ("dose-check", "warning")),
         "hepatic-monotherapy",
         ("AST 200 U/L on 2026-11-24", "**5 x ULN**", "ULN 40 U/L (lab reference range)", "give 32 mg/m2")),
    Case("hepatic-monotherapy-beyond", cards_of(("hepatic-monotherapy", "critical")), "hepatic-monotherapy",
         ("Bilirubin 4.8 mg/dL on 2026-11-24", "**4 x ULN**", "ULN 1.2 mg/dL (lab reference range)",
          "do not give ixabepilone")),
    Case("hepatic-impairment-condition",
         cards_of(("hepatic-impairment-condition", "warning"), ("labs-missing", "warning")),
         "hepatic-impairment-condition",
         ("Cirrhosis of liver, 2021-08-15, Condition/ixa-liver-disease-no-lfts-cirrhosis",
          "AST: none on record", "ALT: none on record", "Bilirubin: none on record")),
    Case("hypersensitivity", cards_of(("hypersensitivity", "critical")), "hypersensitivity",
         ("**Cremophor EL (polyoxyl 35 castor oil)**, criticality high", "2024-02-14",
          "AllergyIntolerance/ixa-cremophor-allergy-cremophor", "**severe** (criticality high, anaphylaxis)")),
    Case("hypersensitivity-paclitaxel", cards_of(("hypersensitivity", "warning")), "hypersensitivity",
         ("**Paclitaxel (Taxol)**, criticality low, reaction severity mild", "2024-06-20",
          "AllergyIntolerance/ixa-paclitaxel-allergy-paclitaxel", "premedicate with a corticosteroid")),
    # issue 12: how EHRs code it
    Case("hypersensitivity-paclitaxel-anaphylaxis", cards_of(("hypersensitivity", "critical")), "hypersensitivity",
         ("**Paclitaxel (Taxol)**, criticality high, reaction severity severe, reaction: Anaphylaxis",
          "**severe** (criticality high, reaction recorded as severe, anaphylaxis) → critical",
          "AllergyIntolerance/ixa-paclitaxel-anaphylaxis-paclitaxel", "CTC grade 3/4")),
    Case("hypersensitivity-prior-ixabepilone", cards_of(("hypersensitivity", "warning")), "hypersensitivity",
         ("**Ixabepilone (IXEMPRA)**, criticality low, reaction severity mild, reaction: Hives",
          "dexamethasone 20 mg IV, 30 minutes before the infusion")),
    Case("pregnancy-normal-pregnancy", cards_of(("pregnancy", "critical")), "pregnancy",
         ("**Normal pregnancy**, 2026-09-16, Condition/ixa-normal-pregnancy-pregnancy", "7 months")),
    Case("pregnancy-hcg-positive-20d", cards_of(("pregnancy", "critical")), "pregnancy",
         ("**Positive hCG test (LOINC 2106-3)**, 2026-11-05, Observation/ixa-hcg-positive-20d-hcg",
          "positive hCG test from the last 10 months")),
    Case("cyp3a4-strong-inhibitor-stopped",
         cards_of(("cyp3a4-strong-inhibitor", "warning"), ("dose-check", "warning")), "cyp3a4-strong-inhibitor",
         ("**ketoconazole 200 MG Oral Tablet**, order (completed)", "completed 2026-11-22 (dosing period end)",
          "return to the full dose about 1 week after it stopped (from 2026-11-29)", "route Oral route (SNOMED 26643006)")),
    Case("cyp3a4-strong-inhibitor-plan",
         cards_of(("cyp3a4-strong-inhibitor", "warning"), ("dose-check", "warning")), "cyp3a4-strong-inhibitor",
         ("**clarithromycin 500 MG Oral Tablet**, active order (active)", "intent plan",
          "MedicationRequest/ixa-clarithromycin-plan-clarithromycin")),
    Case("dose-check-calculated", cards_of(("dose-check", "warning")), "dose-check",
         ("**120 mg** (calculated dose)", "40 mg/m2 x 1.8 m2 = 72 mg", "flagged above 79.2 mg",
          "also on the order: Ixabepilone (IXEMPRA) injection: **40 mg/m2** (ordered dose)")),
    Case("regimen-clarithromycin", cards_of(("cyp3a4-strong-inhibitor", "warning")), "cyp3a4-strong-inhibitor",
         ("**clarithromycin 500 MG Oral Tablet**, draft order", "**The patient is on ixabepilone**",
          "**Ixabepilone (IXEMPRA) 40 mg/m2 every 3 weeks**, active order (active), 2026-11-15",
          "MedicationRequest/ixa-on-regimen-clarithromycin-ixabepilone")),
    Case("regimen-clarithromycin-order-select", cards_of(("cyp3a4-strong-inhibitor", "warning")),
         "cyp3a4-strong-inhibitor", ("**clarithromycin 500 MG Oral Tablet**, draft order",
                                     "**The patient is on ixabepilone**")),
    Case("pregnancy", cards_of(("pregnancy", "critical")), "pregnancy",
         ("**Pregnancy**, 2026-09-26, Condition/ixa-pregnant-pregnancy", "7 months")),
    Case("breastfeeding", cards_of(("breastfeeding", "warning")), "breastfeeding",
         ("currently breastfeeding", "2026-11-20", "Observation/ixa-breastfeeding-bf-status", "2 weeks")),
    Case("cyp3a4-strong-inhibitor",
         cards_of(("cyp3a4-strong-inhibitor", "warning"), ("dose-check", "warning")), "cyp3a4-strong-inhibitor",
         ("**ketoconazole 200 MG Oral Tablet**, active order (active), 2026-11-15",
          "MedicationRequest/ixa-ketoconazole-ketoconazole", "**20 mg/m2**", "Grapefruit")),
    Case("cyp3a4-strong-inhibitor-medication-reference",
         cards_of(("cyp3a4-strong-inhibitor", "warning"), ("dose-check", "warning")), "cyp3a4-strong-inhibitor",
         ("**clarithromycin 500 MG Oral Tablet**", "MedicationRequest/ixa-medication-reference-clarithromycin-rx")),
    Case("cyp3a4-strong-inducer", cards_of(("cyp3a4-strong-inducer", "warning")), "cyp3a4-strong-inducer",
         ("**rifampin 300 MG Oral Capsule**, active order (active), 2026-10-26",
          "MedicationRequest/ixa-rifampin-rifampin", "60 mg/m2", "St John's wort")),
    Case("cyp3a4-other", cards_of(("cyp3a4-other", "info")), "cyp3a4-other",
         ("**erythromycin 250 MG Oral Tablet**, medication statement (active), 2026-11-21",
          "MedicationStatement/ixa-erythromycin-erythromycin", "Grapefruit"),
         url=FDA_CYP_TABLE_URL),
    Case("labs-missing", cards_of(("labs-missing", "warning")), "labs-missing",
         ("ANC: latest 3.4 10*3/uL on 2026-11-15, 10 days old (window 7 d",
          "Platelets: latest 245 10*3/uL on 2026-11-15, 10 days old (window 7 d")),
    Case("dose-check", cards_of(("dose-check", "warning")), "dose-check",
         ("**100 mg** ordered", "40 mg/m2 x 1.66 m2 = 66.3 mg", "flagged above 73 mg",
          "height 165 cm on 2026-09-26", "weight 60 kg on 2026-11-24")),
    Case("premedication-missing", cards_of(("premedication-missing", "info")), "premedication-missing",
         ("Missing: H1 and H2 antagonist", "diphenhydramine 50 mg", "St John's wort")),
    Case("radiation-recall", cards_of(("radiation-recall", "info")), "radiation-recall",
         ("**Radiotherapy**, 2026-10-26 (30 d ago), code 1287742003, Procedure/ixa-radiotherapy-30d-radiotherapy",
          "90-day window"),
         url=PATIENT_ARTICLE_URL),
    Case("live-vaccine", cards_of(("live-vaccine", "warning")), "live-vaccine",
         ("**MMR**, 2026-11-15 (10 d ago), code 03, Immunization/ixa-live-vaccine-mmr", "within 30 days"),
         url=PATIENT_ARTICLE_URL),
    Case("neuropathy-risk", cards_of(("neuropathy-risk", "info")), "neuropathy-risk",
         ("**Diabetes mellitus type 2**, 2015-03-01", "code 44054006", "Condition/ixa-diabetes-t2dm")),
    Case("check-unavailable", cards_of(("labs-missing", "warning"), ("check-unavailable", "info")),
         "check-unavailable",
         ("latest Platelets (Observation/ixa-clean-plt): no value (specimen clotted)", "No card does not mean safe"),
         url=None),  # a data-quality card cites no clinical source
]


def request_body(fixture: str) -> dict[str, Any]:
    return load_json(HTTP / f"{fixture}.json")


def call(client, body: dict[str, Any]) -> list[dict[str, Any]]:
    url = SELECT if body["hook"] == "order-select" else SIGN
    response = client.post(url, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.get_data(as_text=True)[:1000]
    answer = response.get_json()
    assert schema_errors("service_response", answer) == []
    return answer["cards"]


def pairs(cards: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(card["source"]["topic"]["code"], card["indicator"]) for card in cards]


def card_for(cards: list[dict[str, Any]], code: str) -> dict[str, Any]:
    found = [card for card in cards if card["source"]["topic"]["code"] == code]
    assert len(found) == 1, f"{len(found)} {code} cards"
    return found[0]


# -- one request per rule code -----------------------------------------------------


def test_every_rule_code_has_an_http_case():
    covered = {code for case in CASES for code, _ in case.cards}
    assert covered == RULE_CODES
    assert {case.rule for case in CASES} == RULE_CODES


@pytest.mark.parametrize("case", CASES, ids=[c.fixture for c in CASES])
def test_request_gets_exactly_the_expected_cards(client, case):
    cards = call(client, request_body(case.fixture))
    assert sorted(pairs(cards)) == sorted(case.cards)  # a list: a duplicate card fails too


@pytest.mark.parametrize("case", CASES, ids=[c.fixture for c in CASES])
def test_card_names_its_rule_source_and_triggering_data(client, case):
    cards = call(client, request_body(case.fixture))
    for card in cards:
        topic = card["source"]["topic"]
        assert topic["system"] == RULE_SYSTEM
        assert topic["code"] in RULE_CODES and topic["display"]
    card = card_for(cards, case.rule)
    assert card["source"].get("url") == case.url
    for text in case.evidence:
        assert text in markdown_text(card["detail"]), f"{text!r} not in the {case.rule} card:\n{card['detail']}"


def test_cards_citing_the_label_name_its_section(client):
    """The url is the whole label; the source label says which section to read."""
    cards = call(client, request_body("hepatic-monotherapy"))
    labels = {card["source"]["topic"]["code"]: card["source"]["label"] for card in cards}
    assert labels["hepatic-monotherapy"].endswith("§2.4 Table (monotherapy)")
    assert labels["dose-check"].endswith("§2 Dosage and administration")


# -- suggestions an oncologist can accept in one click --------------------------------


@pytest.mark.parametrize(
    "fixture, code",
    [
        ("neutrophils-low", "neutrophils-low"),
        ("platelets-low", "platelets-low"),
        ("hepatic-combination", "hepatic-combination"),
        ("hepatic-monotherapy-beyond", "hepatic-monotherapy"),
        ("hypersensitivity", "hypersensitivity"),
        ("pregnancy", "pregnancy"),
    ],
)
def test_critical_card_suggests_cancelling_the_draft_order(client, fixture, code):
    body = request_body(fixture)
    draft_id = body["context"]["draftOrders"]["entry"][0]["resource"]["id"]
    card = card_for(call(client, body), code)
    assert card["indicator"] == "critical"
    actions = [a for s in card["suggestions"] for a in s["actions"]]
    assert actions == [
        {"type": "delete", "description": actions[0]["description"], "resourceId": f"MedicationRequest/{draft_id}"}
    ]


@pytest.mark.parametrize(
    "fixture, code, mg_per_m2",
    [
        ("hepatic-monotherapy", "hepatic-monotherapy", 32),  # [L §2.4 Table] AST 5 x ULN
        ("cyp3a4-strong-inhibitor", "cyp3a4-strong-inhibitor", 20),  # [L §7]
    ],
)
def test_dose_reduction_card_suggests_the_order_at_the_label_dose(client, fixture, code, mg_per_m2):
    body = request_body(fixture)
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    card = card_for(call(client, body), code)
    (suggestion,) = card["suggestions"]
    (action,) = suggestion["actions"]
    assert action["type"] == "update"
    assert action["resource"]["id"] == draft["id"]
    assert action["resource"]["medicationCodeableConcept"] == draft["medicationCodeableConcept"]
    dose = action["resource"]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    assert dose == {"value": mg_per_m2, "unit": "mg/m2", "system": "http://unitsofmeasure.org", "code": "mg/m2"}


def test_premedication_card_suggests_creating_h1_and_h2_orders(client):
    card = card_for(call(client, request_body("premedication-missing")), "premedication-missing")
    assert card["selectionBehavior"] == "any"
    created = [a["resource"] for s in card["suggestions"] for a in s["actions"] if a["type"] == "create"]
    codings = sorted(
        (c["system"], c["code"]) for r in created for c in r["medicationCodeableConcept"]["coding"]
    )
    rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm"
    # diphenhydramine 50 mg capsule (H1) and famotidine 20 mg tablet (H2) [L §2.3]; never cimetidine
    assert codings == [(rxnorm, "1020477"), (rxnorm, "310273")]
    assert all(r["status"] == "draft" and r["subject"] == {"reference": "Patient/ixa-clean"} for r in created)


# -- order-select ------------------------------------------------------------------


def test_order_select_of_the_ixabepilone_order_gets_the_same_critical_card(client):
    body = request_body("platelets-low-order-select")
    assert body["hook"] == "order-select"
    assert body["context"]["selections"] == ["MedicationRequest/draft-ixa-platelets-low"]
    cards = call(client, body)
    assert pairs(cards) == [("platelets-low", "critical")]
    assert "Platelets 80,000 cells/mm3 on 2026-11-24" in cards[0]["detail"]


def draft_medication(body: dict[str, Any], order_id: str, rxcui: str, display: str) -> None:
    body["context"]["draftOrders"]["entry"].append({"resource": {
        "resourceType": "MedicationRequest",
        "id": order_id,
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [
            {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxcui, "display": display}]},
        "subject": {"reference": "Patient/ixa-platelets-low"},
    }})


def test_order_select_of_another_order_gets_no_cards_though_an_unselected_draft_interacts(client):
    """Selecting an unrelated order while an ixabepilone draft and ketoconazole (a strong CYP3A4 inhibitor,
    label §7.1; RxNorm 6135, codes.md) sit unselected on the list: nothing to say yet (CDS Hooks order-select:
    the service answers about the selections). The same list with ketoconazole selected gets the
    interaction card, so the silence comes from the selection and not from the drafts."""
    body = request_body("platelets-low-order-select")
    draft_medication(body, "draft-ketoconazole", "6135", "ketoconazole 200 MG Oral Tablet")
    draft_medication(body, "draft-acetaminophen", "313782", "acetaminophen 325 MG Oral Tablet")
    body["context"]["selections"] = ["MedicationRequest/draft-acetaminophen"]
    assert call(client, body) == []
    body["context"]["selections"] = ["MedicationRequest/draft-ketoconazole"]
    assert ("cyp3a4-strong-inhibitor", "warning") in pairs(call(client, body))


# -- whole patients --------------------------------------------------------------------


def test_clean_patient_gets_no_cards(client):
    cards = call(client, request_body("clean"))
    assert [c for c in cards if c["indicator"] in ("warning", "critical")] == []
    assert cards == []


def test_patient_with_several_findings_gets_each_card_once(client):
    cards = call(client, request_body("several-findings"))
    expected = {
        ("neutrophils-low", "critical"),
        ("platelets-low", "critical"),
        ("cyp3a4-strong-inhibitor", "warning"),
        ("dose-check", "warning"),
        ("premedication-missing", "info"),
        ("neuropathy-risk", "info"),
    }
    counts = Counter(pairs(cards))
    assert set(counts) == expected
    assert set(counts.values()) == {1}
    # most urgent first, so the EHR shows what blocks the order at the top
    rank = {"critical": 0, "warning": 1, "info": 2}
    assert [rank[c["indicator"]] for c in cards] == sorted(rank[c["indicator"]] for c in cards)


# -- thresholds through HTTP: just below, at, just above ------------------------------------


def with_lab(fixture: str, observation_id: str, quantity: dict[str, Any]) -> dict[str, Any]:
    body = request_body(fixture)
    for entry in body["prefetch"]["labs"]["entry"]:
        if entry["resource"]["id"] == observation_id:
            entry["resource"]["valueQuantity"] = quantity
            return body
    raise AssertionError(f"{observation_id} not in {fixture}")


def ucum(value: float, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": "http://unitsofmeasure.org", "code": code}


@pytest.mark.parametrize(
    "value, fires",
    [(1.499, True), (1.5, False), (1.501, False)],  # [L §4] ANC < 1,500 cells/mm3
)
def test_anc_threshold_over_http(client, value, fires):
    body = with_lab("neutrophils-low", "ixa-anc-low-anc", ucum(value, "10*3/uL"))
    assert (("neutrophils-low", "critical") in pairs(call(client, body))) is fires


@pytest.mark.parametrize(
    "value, fires",
    [(99_999, True), (100_000, False), (100_001, False)],  # [L §4] platelets < 100,000 cells/mm3
)
def test_platelet_threshold_over_http_in_per_microlitre(client, value, fires):
    body = with_lab("platelets-low", "ixa-platelets-low-plt", ucum(value, "/uL"))
    assert (("platelets-low", "critical") in pairs(call(client, body))) is fires


@pytest.mark.parametrize(
    "ast, fires",
    [(99, False), (100, False), (101, True)],  # [L Boxed warning] with capecitabine AST > 2.5 x ULN (ULN 40)
)
def test_capecitabine_transaminase_threshold_over_http(client, ast, fires):
    body = with_lab("hepatic-combination", "ixa-capecitabine-ast-3x-ast", ucum(ast, "U/L"))
    assert (("hepatic-combination", "critical") in pairs(call(client, body))) is fires



# -- other ways in: drafts on the same order list ----------------------------------------

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def add_draft(body: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    resource.setdefault("subject", {"reference": f"Patient/{body['context']['patientId']}"})
    body["context"]["draftOrders"]["entry"].append({"resource": resource})
    return resource


def test_order_select_of_an_interacting_drug_checks_the_ixabepilone_draft(client):
    """Selecting ketoconazole while ixabepilone is drafted: the interaction shows before signing."""
    body = request_body("clean")
    body["hook"] = "order-select"
    add_draft(body, {
        "resourceType": "MedicationRequest", "id": "draft-ketoconazole", "status": "draft", "intent": "order",
        "medicationCodeableConcept": {"coding": [
            {"system": RXNORM, "code": "6135", "display": "ketoconazole"}], "text": "ketoconazole 200 mg tablet"},
    })
    body["context"]["selections"] = ["MedicationRequest/draft-ketoconazole"]
    cards = call(client, body)
    # 66 mg ordered = 40 mg/m2 x 1.66 m2, above 20 mg/m2 x 1.66 m2 x 1.1 [L §7]
    assert sorted(pairs(cards)) == [("cyp3a4-strong-inhibitor", "warning"), ("dose-check", "warning")]
    assert "ketoconazole 200 mg tablet" in card_for(cards, "cyp3a4-strong-inhibitor")["detail"]


def test_capecitabine_in_the_same_draft_orders_triggers_the_boxed_warning(client):
    """hepatic-combination: capecitabine ordered together with ixabepilone, not yet active."""
    body = request_body("hepatic-combination")
    before = len(body["prefetch"]["medicationRequests"]["entry"])
    body["prefetch"]["medicationRequests"]["entry"] = [
        e for e in body["prefetch"]["medicationRequests"]["entry"]
        if e["resource"]["id"] != "ixa-capecitabine-ast-3x-capecitabine"
    ]
    assert len(body["prefetch"]["medicationRequests"]["entry"]) == before - 1  # no active capecitabine left
    body["prefetch"]["medicationRequests"]["total"] = before - 1  # a search that found one fewer
    add_draft(body, {
        "resourceType": "MedicationRequest", "id": "draft-capecitabine", "status": "draft", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "194000", "display": "capecitabine"}]},
    })
    cards = call(client, body)
    assert pairs(cards) == [("hepatic-combination", "critical")]
    assert "draft order" in cards[0]["detail"]


@pytest.mark.parametrize(
    "mg, fires",
    [(96.8, False), (97, True)],  # [L §2] BSA 2.41 m2 counts as 2.2: 88 mg, flagged above 96.8 mg (+10%)
)
def test_dose_check_caps_bsa_at_2_2_square_metres(client, mg, fires):
    body = request_body("clean")
    for entry in body["prefetch"]["vitals"]["entry"]:
        code = entry["resource"]["code"]["coding"][0]["code"]
        if code == "8302-2":
            entry["resource"]["valueQuantity"] = ucum(190, "cm")
        elif code == "29463-7":
            entry["resource"]["valueQuantity"] = ucum(110, "kg")
    order = body["context"]["draftOrders"]["entry"][0]["resource"]
    order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = ucum(mg, "mg")
    cards = call(client, body)
    assert pairs(cards) == ([("dose-check", "warning")] if fires else [])
    if fires:
        assert "counted as 2.2 m2" in cards[0]["detail"]


def test_live_vaccine_ordered_with_ixabepilone_gets_a_warning(client):
    """live-vaccine's other trigger: a live vaccine on the same order list, whatever its date [S]."""
    body = request_body("clean")
    add_draft(body, {
        "resourceType": "MedicationRequest", "id": "draft-mmr", "status": "draft", "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "03", "display": "MMR"}],
            "text": "measles, mumps and rubella virus vaccine, live",
        },
    })
    cards = call(client, body)
    assert pairs(cards) == [("live-vaccine", "warning")]
    assert "MedicationRequest/draft-mmr" in cards[0]["detail"] and "code 03" in cards[0]["detail"]


@pytest.mark.parametrize(
    "rxcui",
    ["1020477", "1049909"],  # diphenhydramine HCl 50 mg / 25 mg capsule (openFDA NDC openfda.rxcui; drugs.json)
)
def test_h1_premedication_coded_only_by_rxnorm_product_counts(client, rxcui):
    """An H1 order with no name in it, only the capsule's RxNorm code, is still premedication."""
    body = request_body("premedication-missing")
    add_draft(body, {
        "resourceType": "MedicationRequest", "id": "draft-h1", "status": "draft", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rxcui}]},
    })
    card = card_for(call(client, body), "premedication-missing")
    assert "Missing: H2 antagonist." in card["detail"]
    assert [s["label"] for s in card["suggestions"]] == ["Order famotidine 20 mg PO (H2 antagonist)"]
