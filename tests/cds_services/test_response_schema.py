"""Every answer validates against a JSON Schema of the CDS Hooks 2.0 response
(cds_services/schemas/, written from the spec), for the sample and for patients with
many findings, suggestions and override reasons."""
from __future__ import annotations

import copy
import json

import pytest

from cds_services.schemas import schema_errors

SIGN = "/cds-services/ixabepilone-order-sign"


def errors(document):
    return schema_errors("service_response", document)


@pytest.mark.parametrize("bad", [
    {"cards": [{"summary": "x" * 140, "indicator": "info", "source": {"label": "L"}}]},
    {"cards": [{"summary": "s", "indicator": "error", "source": {"label": "L"}}]},
    {"cards": [{"summary": "s", "indicator": "info", "source": {"label": "L"}, "detail": None}]},
    {"cards": [{"summary": "s", "indicator": "info", "source": {"label": "L"},
                "suggestions": [{"label": "x"}]}]},
    {"cards": [{"summary": "s", "indicator": "info", "source": {"label": "L"}, "overrideReasons": [{"system": "s", "code": "c"}]}]},
    {"cards": [{"summary": "s", "indicator": "info", "source": {"label": "L"}, "suggestions": [], "selectionBehavior": "any"}]},
], ids=["summary-140", "bad-indicator", "null-detail", "suggestions-without-selectionBehavior",
        "override-without-display", "empty-suggestions"])
def test_schema_rejects_what_the_spec_forbids(bad):
    assert errors(bad)


def test_sample_answer_validates(client, sample_request):
    response = client.post(SIGN, data=json.dumps(sample_request), content_type="application/json")
    assert errors(response.get_json()) == []


def test_answer_with_many_cards_validates(client, sample_request):
    body = copy.deepcopy(sample_request)
    entries = body["context"]["draftOrders"]["entry"]
    body["context"]["draftOrders"]["entry"] = [entries[0]]  # no premedication drafted
    entries[0]["resource"]["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {
        "value": 200, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
    body["prefetch"]["medicationRequests"] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "MedicationRequest", "id": "keto-1", "status": "active", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                  "code": "6135", "display": "ketoconazole"}]},
        "subject": {"reference": "Patient/ixa-demo-1"}}}]}
    body["prefetch"]["allergies"] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "AllergyIntolerance", "id": "alg-1",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                       "code": "active"}]},
        "code": {"text": "Paclitaxel (Taxol)"}, "patient": {"reference": "Patient/ixa-demo-1"}}}]}
    response = client.post(SIGN, data=json.dumps(body), content_type="application/json")
    document = response.get_json()
    assert len(document["cards"]) >= 4
    assert any("suggestions" in c for c in document["cards"])
    assert errors(document) == []
