"""The same patient gives the same cards however its data arrives: all prefetched, partly, or none.

Spec 2.0 lets the EHR prefetch any subset of the templates; the service reads
the rest from ``fhirServer``. The two paths parse different shapes (the EHR's
search Bundles against our own reads), so a rule that fires on one path and
not the other is a real bug the unit tests cannot see. The full prefetch is
built the way an EHR builds it: each discovery template, rendered for the
patient, run against the real FHIR server.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import markdown_text, rule_codes

pytestmark = pytest.mark.integration

PATIENTS = Path(__file__).resolve().parent.parent / "fixtures" / "patients"
EXPECTED = json.loads((PATIENTS / "expected.json").read_text(encoding="utf-8"))["patients"]
SERVICE = "/cds-services/ixabepilone-order-sign"
NOT_PREFETCHED = {  # spec 2.0: what an EHR sends for a key it could not prefetch
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "processing", "diagnostics": "prefetch query timed out in the EHR"}],
}


def render(template: str, patient_id: str) -> str:
    """Fill ``{{context.patientId}}``; any other token would mean our templates need more context than we give."""
    query = template.replace("{{context.patientId}}", patient_id)
    assert "{{" not in query, f"unrendered prefetch token in {template!r}"
    return query


@pytest.fixture(scope="module")
def full_prefetch(fhir_server, fhir_patients, prefetch_templates) -> dict[str, dict[str, Any]]:
    """Every patient's prefetch: each template run against the real server, as an EHR would."""
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {fhir_server.token}", "Accept": "application/fhir+json"})
    try:
        prefetch: dict[str, dict[str, Any]] = {}
        for patient_id in fhir_patients.ids:
            prefetch[patient_id] = {}
            for key, template in prefetch_templates.items():
                response = session.get(f"{fhir_server.base_url}/{render(template, patient_id)}", timeout=10)
                assert response.status_code == 200, f"{patient_id} {key}: {response.text[:500]}"
                prefetch[patient_id][key] = response.json()
        return prefetch
    finally:
        session.close()


def partial(full: dict[str, Any], index: int) -> dict[str, Any]:
    """Every third key (which third turns with the patient), one left-out key as an OperationOutcome."""
    keys = sorted(full)
    given = keys[index % 3 :: 3]
    left_out = [key for key in keys if key not in given]
    return {**{key: full[key] for key in given}, left_out[0]: NOT_PREFETCHED}


def findings(response: Any) -> list[tuple[str, str]]:
    """(rule code, indicator) of each card, in the service's order."""
    assert response.status_code == 200, response.get_data(as_text=True)[:1000]
    body = response.get_json()
    return list(zip(rule_codes(body), [card["indicator"] for card in body["cards"]], strict=False))


def test_discovery_publishes_a_template_for_every_key_the_readme_names(prefetch_templates):
    assert set(prefetch_templates) == {
        "patient", "medicationRequests", "medicationStatements", "labs", "vitals", "reproductive",
        "conditions", "allergies", "procedures", "immunizations",
    }


def test_every_expected_patient_is_on_the_server(fhir_patients):
    assert sorted(fhir_patients.ids) == sorted(EXPECTED)


@pytest.mark.parametrize("patient_id", sorted(EXPECTED))
def test_full_partial_and_no_prefetch_give_the_same_cards(
    local_service, make_hook, fhir_server, fhir_patients, full_prefetch, patient_id
):
    order = fhir_patients.order(patient_id)
    base, token = fhir_server.base_url, fhir_server.token
    full = findings(local_service.post(SERVICE, json=make_hook(patient_id, order, base, token, full_prefetch[patient_id])))
    # Full prefetch with no fhirServer at all: no key may be treated as missing. (Only a Medication
    # that an order references by id can need the server: the templates use no _include.)
    alone = local_service.post(SERVICE, json=make_hook(patient_id, order, None, None, full_prefetch[patient_id]))
    assert "could not be had" not in unavailable_text(alone.get_json())
    some = partial(full_prefetch[patient_id], sorted(EXPECTED).index(patient_id))
    part = findings(local_service.post(SERVICE, json=make_hook(patient_id, order, base, token, some)))
    none = findings(local_service.post(SERVICE, json=make_hook(patient_id, order, base, token)))

    story = EXPECTED[patient_id]["story"]
    assert part == full, f"partial prefetch ({sorted(some)}) differs from full prefetch: {story}"
    assert none == full, f"no prefetch differs from full prefetch: {story}"
    assert sorted(code for code, _ in full) == sorted(EXPECTED[patient_id]["rules"]), story


def unavailable_text(answer: dict[str, Any]) -> str:
    return markdown_text(" ".join(c["detail"] for c in answer["cards"]
                                  if c["source"]["topic"]["code"] == "check-unavailable"))


def test_partial_prefetch_without_a_server_names_exactly_the_keys_not_sent(
        local_service, make_hook, fhir_patients, full_prefetch):
    """Without fhirServer the answer names what the service would have fetched: the absent keys and the
    OperationOutcome key (with the EHR's words), and none of the keys that were sent."""
    some = partial(full_prefetch["ixa-clean"], 0)
    missing = sorted(key for key in full_prefetch["ixa-clean"] if some.get(key, NOT_PREFETCHED) is NOT_PREFETCHED)
    response = local_service.post(SERVICE, json=make_hook("ixa-clean", fhir_patients.order("ixa-clean"), None, None, some))
    assert response.status_code == 200
    text = unavailable_text(response.get_json())
    for key in full_prefetch["ixa-clean"]:
        assert (f"prefetch.{key} could not be had" in text) is (key in missing), key
    assert "the EHR sent an OperationOutcome instead (prefetch query timed out in the EHR)" in text
    assert 0 < len(some) - 1 < len(missing)  # "a few keys given": the test really is partial
