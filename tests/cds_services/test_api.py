"""The CDS Hooks endpoints as an EHR sees them: discovery, service calls, errors."""
from __future__ import annotations

import copy
import json

import pytest

from tests.support import rule_codes

SIGN = "/cds-services/ixabepilone-order-sign"
SELECT = "/cds-services/ixabepilone-order-select"


def post(client, url, body, **kwargs):
    return client.post(url, data=json.dumps(body), content_type="application/json", **kwargs)


def assert_outcome(response, status, words):
    assert response.status_code == status
    assert response.is_json, response.data[:200]
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    diagnostics = body["issue"][0]["diagnostics"]
    assert words in diagnostics, diagnostics
    assert "Traceback" not in response.get_data(as_text=True)


# -- discovery (requirements 4-13) -------------------------------------------------

def test_discovery_lists_one_service_per_hook(client):
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = response.get_json()["services"]
    by_hook = {s["hook"]: s for s in services}
    assert set(by_hook) == {"order-select", "order-sign"}
    assert len({s["id"] for s in services}) == len(services)
    for service in services:
        assert service["title"] and service["description"] and service["usageRequirements"]
        assert "Knowledge version" in service["description"]


def test_discovery_prefetch_covers_every_resource_the_checks_read(client):
    prefetch = client.get("/cds-services").get_json()["services"][0]["prefetch"]
    queries = " ".join(prefetch.values())
    for resource in ("Patient/", "MedicationRequest?", "MedicationStatement?", "Observation?",
                     "Condition?", "AllergyIntolerance?", "Procedure?", "Immunization?"):
        assert resource in queries
    for loinc in ("751-8", "6690-2", "777-3", "1920-8", "1742-6", "1975-2", "8302-2", "29463-7", "82810-3"):
        assert f"http://loinc.org|{loinc}" in queries
    # spec §prefetch-tokens: only {{context.x}} tokens, and no draftOrders/selections
    assert all("{{context.patientId}}" in q for q in prefetch.values())
    assert "draftOrders" not in queries and "selections" not in queries


# -- service calls -------------------------------------------------------------------

def test_sample_request_gets_a_critical_platelet_card(client, sample_request):
    response = post(client, SIGN, sample_request)
    assert response.status_code == 200, response.get_json()
    cards = response.get_json()["cards"]
    platelets = [c for c in cards if c["source"]["topic"]["code"] == "platelets-low"]
    assert len(platelets) == 1
    card = platelets[0]
    assert card["indicator"] == "critical"
    assert "80,000" in card["summary"] or "80,000" in card["detail"]
    assert "2026-11-24" in card["detail"]
    assert card["source"]["url"].startswith("https://")
    delete = [a for s in card["suggestions"] for a in s.get("actions", []) if a["type"] == "delete"]
    assert delete and delete[0]["resourceId"] == "MedicationRequest/draft-ixa-1"
    assert card["selectionBehavior"]
    assert all(r["display"] for r in card["overrideReasons"])


def test_no_ixabepilone_order_means_no_cards(client, hook_request):
    body = hook_request()
    order = body["context"]["draftOrders"]["entry"][0]["resource"]
    order["medicationCodeableConcept"] = {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197361",
                    "display": "amlodipine 5 MG Oral Tablet"}],
        "text": "amlodipine 5 MG Oral Tablet",
    }
    # No prefetch and no fhirServer: nothing is fetched when nothing needs checking.
    body.pop("prefetch")
    response = post(client, SIGN, body)
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


@pytest.mark.parametrize(
    "bundle",
    [
        {"resourceType": "Bundle"},  # no type, no entries
        {"resourceType": "Bundle", "type": "collection", "entry": []},
        {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "MedicationRequest", "status": "draft",
                                                            "subject": {"reference": "Patient/ixa-demo-1"}}}]},
    ],
    ids=["bundle-without-type", "no-entries", "order-without-drug-or-intent"],
)
def test_incomplete_draft_orders_from_a_browser_are_not_an_error(client, hook_request, bundle):
    body = hook_request(hook="order-select")
    body["context"]["draftOrders"] = bundle
    body["context"]["selections"] = []
    response = post(client, SELECT, body)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"cards": []}


def test_order_select_ignores_orders_that_are_not_selected(client, hook_request):
    body = hook_request(hook="order-select")
    body["context"]["selections"] = ["MedicationRequest/draft-h1"]  # diphenhydramine, not ixabepilone
    response = post(client, SELECT, body)
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


def test_order_select_acts_on_a_selected_ixabepilone_order(client, hook_request):
    response = post(client, SELECT, hook_request(hook="order-select"))
    assert response.status_code == 200
    assert "platelets-low" in rule_codes(response.get_json())


def test_order_select_acts_when_the_selection_interacts_with_drafted_ixabepilone(client, hook_request):
    body = hook_request(hook="order-select")
    body["context"]["draftOrders"]["entry"].append({"resource": {
        "resourceType": "MedicationRequest", "id": "draft-keto", "status": "draft", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                  "code": "6135", "display": "ketoconazole"}],
                                      "text": "ketoconazole 200 MG Oral Tablet"},
        "subject": {"reference": "Patient/ixa-demo-1"}}})
    body["context"]["selections"] = ["MedicationRequest/draft-keto"]
    response = post(client, SELECT, body)
    assert response.status_code == 200
    codes = rule_codes(response.get_json())
    assert "cyp3a4-strong-inhibitor" in codes


def test_order_select_ignores_a_selected_drug_that_does_not_interact(client, hook_request):
    body = hook_request(hook="order-select")
    body["context"]["selections"] = ["MedicationRequest/draft-h2"]  # famotidine
    assert post(client, SELECT, body).get_json() == {"cards": []}


def test_cards_carry_rule_code_and_short_summary(client, sample_request):
    cards = post(client, SIGN, sample_request).get_json()["cards"]
    assert cards
    for card in cards:
        assert len(card["summary"]) < 140
        assert card["source"]["topic"]["system"] == "urn:ixabepilone-cds:rules"
        assert card["indicator"] in ("info", "warning", "critical")
        for value in card.values():
            assert value not in (None, "", [], {})


# -- errors (each its own status and sentence) -------------------------------------------

def test_unknown_service_is_404_json(client, sample_request):
    assert_outcome(post(client, "/cds-services/nope", sample_request), 404, "no CDS service with id 'nope'")


def test_wrong_hook_for_the_service_is_400(client, sample_request):
    body = copy.deepcopy(sample_request)
    body["hook"] = "order-select"
    assert_outcome(post(client, SIGN, body), 400, "does not match service")


def test_malformed_json_is_400(client):
    response = client.post(SIGN, data=b'{"hook": "order-sign",', content_type="application/json")
    assert_outcome(response, 400, "malformed JSON")


def test_wrong_content_type_is_415(client, sample_request):
    response = client.post(SIGN, data=json.dumps(sample_request), content_type="text/plain")
    assert_outcome(response, 415, "Content-Type must be application/json")


def test_fhir_json_content_type_is_accepted(client, sample_request):
    response = client.post(SIGN, data=json.dumps(sample_request), content_type="application/fhir+json")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("path", "words"),
    [
        (("hookInstance",), "hookInstance is required"),
        (("context", "userId"), "context.userId is required"),
        (("context", "patientId"), "context.patientId is required"),
        (("context", "draftOrders"), "context.draftOrders is required"),
        (("context",), "context is required"),
    ],
)
def test_missing_fields_are_400_naming_the_field(client, sample_request, path, words):
    body = copy.deepcopy(sample_request)
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    assert_outcome(post(client, SIGN, body), 400, words)


@pytest.mark.parametrize(("value", "status"), [
    ("d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", 200),  # a UUID, as the spec asks
    ("sandbox-call-17", 200),  # another short id: accepted
    ("x" * 128, 200),
    ("x" * 129, 400),  # it is written on every audit line
    ("line\nbreak", 400),
])
def test_hook_instance_is_a_short_printable_id(client, sample_request, value, status):
    body = copy.deepcopy(sample_request)
    body["hookInstance"] = value
    response = post(client, SIGN, body)
    assert response.status_code == status
    if status == 400:
        assert_outcome(response, 400, "hookInstance must be a UUID")


def test_order_select_without_selections_is_400(client, hook_request):
    body = hook_request(hook="order-select")
    del body["context"]["selections"]
    assert_outcome(post(client, SELECT, body), 400, "context.selections is required")


def test_draft_orders_that_are_not_a_bundle_is_400(client, sample_request):
    body = copy.deepcopy(sample_request)
    body["context"]["draftOrders"] = {"resourceType": "MedicationRequest"}
    assert_outcome(post(client, SIGN, body), 400, "must be a Bundle")


def test_prefetch_value_of_the_wrong_json_type_is_400(client, hook_request):
    assert_outcome(post(client, SIGN, hook_request(labs="lots")), 400, "prefetch.labs must be")


def test_token_for_another_patient_is_refused(client, hook_request):
    body = hook_request()
    body["fhirServer"] = "https://ehr.example.org/fhir"
    body["fhirAuthorization"] = {"access_token": "abc", "token_type": "Bearer", "expires_in": 300,
                                 "scope": "patient/*.read", "subject": "cds", "patient": "someone-else"}
    assert_outcome(post(client, SIGN, body), 400, "does not match context.patientId")


def test_oversized_body_is_413(make_app, sample_request):
    client = make_app({"max_body_bytes": 2048}).test_client()
    assert_outcome(post(client, SIGN, sample_request), 413, "larger than the limit of 2048 bytes")


def test_deeply_nested_json_is_400(client):
    response = client.post(SIGN, data=b"[" * 5000 + b"]" * 5000, content_type="application/json")
    assert_outcome(response, 400, "nested deeper than")


def test_wrong_method_is_405_json(client):
    assert_outcome(client.get(SIGN), 405, "method not allowed")


def test_unknown_path_is_404_json(client):
    assert_outcome(client.get("/nothing-here"), 404, "no such endpoint")


def test_exception_inside_a_rule_still_answers_with_the_other_cards(client, sample_request, monkeypatch):
    from cds_services import rules

    def broken(facts, kb):
        raise ZeroDivisionError("boom")

    registry = rules.RULES if hasattr(rules, "RULES") else None
    assert registry is not None, "the rules registry must be reachable to test isolation"
    monkeypatch.setattr(rules, "RULES", [broken, *registry])
    response = post(client, SIGN, sample_request)
    assert response.status_code == 200
    codes = rule_codes(response.get_json())
    assert "platelets-low" in codes and "check-unavailable" in codes


def test_health(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


@pytest.mark.parametrize(("depth", "status"), [(64, 200), (65, 400)])
def test_json_depth_limit_at_its_threshold(client, sample_request, depth, status):
    body = copy.deepcopy(sample_request)
    nested: dict = {}
    node = nested
    for _ in range(depth - 3):  # body(1) > context(2) > x(3) ...
        node["x"] = {}
        node = node["x"]
    body["context"]["x"] = nested
    response = post(client, SIGN, body)
    assert response.status_code == status, response.get_json()


@pytest.mark.parametrize("patient_id", ["pt&x=1", "a/b", "x" * 65])
def test_patient_id_that_is_not_a_fhir_id_is_400(client, sample_request, patient_id):
    """Regression (schemathesis): the id goes into FHIR query URLs."""
    body = copy.deepcopy(sample_request)
    body["context"]["patientId"] = patient_id
    assert_outcome(post(client, SIGN, body), 400, "must be a FHIR id")


def test_draft_order_of_an_unknown_resource_type_is_not_a_500(client, sample_request):
    """Regression (schemathesis): an unknown resourceType made the parser raise."""
    body = copy.deepcopy(sample_request)
    body["context"]["draftOrders"]["entry"].append({"resource": {"resourceType": "AA", "id": "x"}})
    response = post(client, SIGN, body)
    assert response.status_code == 200
    assert "check-unavailable" in rule_codes(response.get_json())


def test_openapi_document_is_served(client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    assert "/cds-services" in document["paths"]
