"""Each test patient through the whole service: no prefetch, so every datum is fetched from the real server.

The expected rule codes are ``tests/fixtures/patients/expected.json`` (the
README's table). A disagreement means a bug in the service or a wrong row
there: find out which before changing either.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import rule_codes

pytestmark = pytest.mark.integration

PATIENTS = Path(__file__).resolve().parent.parent / "fixtures" / "patients"
EXPECTED = json.loads((PATIENTS / "expected.json").read_text(encoding="utf-8"))["patients"]
SERVICE = "/cds-services/ixabepilone-order-sign"


@pytest.fixture(scope="module")
def service_client(service_factory, fhir_server, fhir_patients):
    settings = {"fhir_servers": (fhir_server.base_url,), "allow_http_fhir": True}
    return service_factory(settings, lambda: fhir_patients.now).test_client()


@pytest.mark.parametrize("patient_id", sorted(EXPECTED))
def test_patient_gets_the_expected_cards(service_client, fhir_server, fhir_patients, make_hook, patient_id):
    body = make_hook(patient_id, fhir_patients.order(patient_id), fhir_server.base_url, fhir_server.token)
    response = service_client.post(SERVICE, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)[:1000]
    assert sorted(rule_codes(response.get_json())) == sorted(EXPECTED[patient_id]["rules"]), EXPECTED[patient_id]["story"]
