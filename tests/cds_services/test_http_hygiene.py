"""HTTP hygiene of the service and feedback answers, through the Flask test
client: no caching of patient data, no JSON null, clients' real spellings
(a UTF-8 BOM, token_type "bearer"). What needs a real server (Connection:
close, chunked bodies) is in tests/serving/test_gunicorn_http.py."""
from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, ROOT, SAMPLES, TEST_FHIR_SERVER, load_json
from tests.signing import generate_ec_key, make_jwks

SIGN = "/cds-services/ixabepilone-order-sign"
SELECT = "/cds-services/ixabepilone-order-select"
FEEDBACK = {"feedback": [{"card": "9368d37b-283f-44a0-93ea-547cebab93ed", "outcome": "overridden",
                          "outcomeTimestamp": "2026-11-25T15:00:00Z"}]}

# The suite's complete hook requests: one per HTTP case, the README sample, and what the
# CDS Hooks sandbox really sent.
REQUEST_FILES = sorted(
    [*(FIXTURES / "http").glob("*.json"), *SAMPLES.glob("*.json"),
     *(ROOT.parent / "shared" / "realclient" / "sandbox").glob("*.json")]
)


def post(client, url: str, body: Any, **kwargs: Any):
    return client.post(url, data=json.dumps(body), content_type="application/json", **kwargs)


def nulls(value: Any, path: str = "$") -> Iterator[str]:
    """JSON paths of every null (CDS Hooks 2.0 §use-of-json: elements SHALL NOT be null)."""
    if value is None:
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from nulls(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from nulls(item, f"{path}[{index}]")


def request_of(path: Path) -> tuple[str, dict[str, Any]]:
    document = load_json(path)
    body = document.get("request", document)  # the sandbox captures wrap the request
    return (SELECT if body["hook"] == "order-select" else SIGN), body


# --- Cache-Control ------------------------------------------------------------


def _answers(client, sample_request, monkeypatch) -> dict[str, Any]:
    too_big = {"padding": " " * (2 * 1024 * 1024)}
    answers = {
        "hook 200": post(client, SIGN, sample_request),
        "feedback 200": post(client, SIGN + "/feedback", FEEDBACK),
        "hook 400": post(client, SIGN, {"hook": "order-sign"}),
        "feedback 400": post(client, SIGN + "/feedback", {"feedback": "no"}),
        "unknown service 404": post(client, "/cds-services/nope", sample_request),
        "415": client.post(SIGN, data=b"<xml/>", content_type="application/xml"),
        "413": post(client, SIGN, too_big),
        "405": client.get(SIGN),
    }
    from cds_services import api

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(api, "run_hook", broken)
    answers["hook 500"] = post(client, SIGN, sample_request)
    return answers


def test_every_hook_and_feedback_answer_forbids_caching(client, sample_request, monkeypatch):
    """Cards carry patient data: no browser or proxy may store them (RFC 9111 §5.2.2.5)."""
    for name, response in _answers(client, sample_request, monkeypatch).items():
        assert response.headers.get("Cache-Control") == "no-store", name
        assert response.headers.get("Pragma") == "no-cache", name


def test_refused_calls_forbid_caching_too(make_app, sample_request):
    key = generate_ec_key("k1", "ES384")
    app = make_app({"allow_unauthenticated": False,
                    "trusted_clients": json.dumps([{"iss": "https://ehr.example.org", "jwks": make_jwks(key)}])})
    response = post(app.test_client(), SIGN, sample_request)
    assert response.status_code == 401
    assert response.headers["Cache-Control"] == "no-store"


# --- no null anywhere -----------------------------------------------------------


def test_discovery_holds_no_null(client):
    response = client.get("/cds-services")
    assert response.status_code == 200
    assert list(nulls(response.get_json())) == []


def test_the_suite_has_request_files_from_every_source():
    names = {p.parent.name for p in REQUEST_FILES}
    assert {"http", "samples", "sandbox"} <= names and len(REQUEST_FILES) > 25


@pytest.mark.parametrize("path", REQUEST_FILES, ids=[f"{p.parent.name}/{p.stem}" for p in REQUEST_FILES])
def test_no_response_holds_null(client, path):
    url, body = request_of(path)
    response = post(client, url, body)
    assert response.status_code in (200, 412), response.get_data(as_text=True)[:300]
    assert list(nulls(response.get_json())) == []
    cards = response.get_json().get("cards", [])
    feedback = post(client, url + "/feedback", {"feedback": [
        {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-25T15:00:00Z"} for card in cards
    ] or FEEDBACK["feedback"]})
    assert feedback.status_code == 200, feedback.get_data(as_text=True)[:300]
    assert list(nulls(feedback.get_json())) == []


# --- what real clients send -------------------------------------------------------


def test_a_leading_utf8_bom_is_accepted(client, sample_request):
    """RFC 8259 §8.1: parsers MAY ignore a BOM; some .NET clients send one."""
    data = b"\xef\xbb\xbf" + json.dumps(sample_request).encode()
    response = client.post(SIGN, data=data, content_type="application/json")
    assert response.status_code == 200
    assert response.get_json()["cards"]


def test_a_bom_alone_is_an_empty_body(client):
    response = client.post(SIGN, data=b"\xef\xbb\xbf", content_type="application/json")
    assert response.status_code == 400
    assert "empty" in response.get_json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(("token_type", "status"), [("Bearer", 200), ("bearer", 200), ("BEARER", 200),
                                                    ("MAC", 400), (7, 400)])
def test_token_type_is_compared_case_insensitively(client, sample_request, token_type, status):
    """RFC 6749 §5.1: token_type "Value is case insensitive"."""
    body = copy.deepcopy(sample_request)
    body["fhirServer"] = TEST_FHIR_SERVER
    body["fhirAuthorization"] = {"access_token": "opaque", "token_type": token_type, "expires_in": 300,
                                 "scope": "patient/*.read", "subject": "cds-service"}
    response = post(client, SIGN, body)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    if status == 400:
        assert "token_type" in response.get_json()["issue"][0]["diagnostics"]
