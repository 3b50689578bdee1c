"""Schemathesis against the OpenAPI document the service serves (GET /openapi.json).

The document is loaded from the running app (in-process, through WSGI: no
network), so what is fuzzed is what an integrator reads. Every operation gets
schema-valid and schema-violating requests; the service must never answer
5xx, must answer what the document says (status, content type, body schema:
an OperationOutcome for every error) and must do it in bounded time.
"""
from __future__ import annotations

import json
import threading
import time

import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# Few examples per operation, derandomized: the same cases on every run. With
# schemathesis' coverage cases added it is ~1,900 requests, about 15 s on two
# cores (the hypothesis tests beside it go deeper on what a schema cannot express).
MAX_EXAMPLES = 25
SECONDS_PER_REQUEST = 3.0  # far above the ~10 ms a call takes in-process; a hang fails
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _configure(loaded, max_examples: int = MAX_EXAMPLES):
    loaded.config.generation.update(max_examples=max_examples, deterministic=True, database="none")
    return loaded


class NoNetwork(requests.Session):
    """The FHIR client's session: a fuzzed fhirServer must never be called."""

    def send(self, request, **kwargs):
        raise requests.ConnectionError(f"test: no network ({request.url})")


@pytest.fixture
def open_schema(make_app):
    """The service as the protocol tests see it: authentication off (explicit flag)."""
    return _configure(schemathesis.openapi.from_wsgi("/openapi.json", make_app(session=NoNetwork())))


open_api = schemathesis.pytest.from_fixture("open_schema")


def _timed_call(case, **kwargs):
    """``case.call`` on a daemon thread: a request that hangs fails the test instead of blocking CI."""
    box: dict = {}

    def run() -> None:
        try:
            box["response"] = case.call(**kwargs)
        except BaseException as error:  # noqa: BLE001 (re-raised on the test's thread)
            box["error"] = error

    worker = threading.Thread(target=run, daemon=True)
    started = time.perf_counter()
    worker.start()
    worker.join(SECONDS_PER_REQUEST)
    elapsed = time.perf_counter() - started
    assert not worker.is_alive(), f"{case.method} {case.formatted_path}: no answer within {elapsed:.1f} s"
    if "error" in box:
        raise box["error"]
    return box["response"]


def _check_answer(case, response) -> None:
    case.validate_response(response, checks=CHECKS)
    if case.method.upper() in ("OPTIONS", "HEAD"):
        # CORS preflight and HEAD carry no body by definition (Fetch standard, RFC 9110 §9.3.2).
        assert response.status_code < 500 and not response.content
        return
    assert response.headers["content-type"][0].startswith("application/json"), response.content[:200]
    body = json.loads(response.content)
    if response.status_code >= 400:
        assert body["resourceType"] == "OperationOutcome", body


@open_api.parametrize()
def test_every_operation_answers_per_the_document_and_never_5xx(case):
    _check_answer(case, _timed_call(case))


# --- with authentication on, as deployed ---------------------------------------------

ISS = "https://ehr.example.org"


@pytest.fixture(scope="module")
def ehr_key():
    from tests.signing import generate_ec_key

    return generate_ec_key("ehr-key-1", "ES384")


@pytest.fixture
def secured_schema(make_app, ehr_key):
    from tests.signing import make_jwks

    trusted = json.dumps([{"iss": ISS, "jwks": make_jwks(ehr_key)}])
    app = make_app({"allow_unauthenticated": False, "trusted_clients": trusted}, session=NoNetwork())
    return _configure(schemathesis.openapi.from_wsgi("/openapi.json", app), max_examples=8)


secured_api = schemathesis.pytest.from_fixture("secured_schema")


@secured_api.parametrize()
def test_fuzzed_calls_need_a_signed_token_and_signed_ones_never_5xx(case, ehr_key):
    """Each case twice: with whatever Authorization schemathesis made up (never a valid
    token: a POST must be refused with 401 and nothing else), then signed by the trusted EHR
    for the exact URL (it must then be answered like the open service answers it)."""
    from tests.signing import bearer, client_claims, sign_token

    posted = case.method.upper() == "POST" == case.operation.method.upper()
    response = _timed_call(case)
    if posted:
        assert response.status_code == 401, response.content[:300]
        assert response.headers["www-authenticate"] == ["Bearer"]
        assert json.loads(response.content)["issue"][0]["diagnostics"] == "authentication required"
    else:
        _check_answer(case, response)
    header = bearer(sign_token(ehr_key, client_claims(ISS, "http://localhost" + case.formatted_path)))
    signed = _timed_call(case, headers={"Authorization": header})
    # A case that tests a missing Authorization header has it stripped by schemathesis, ours too.
    # A percent-escaped path (only ever an id we do not serve) is refused: the service compares
    # aud with the decoded path, the client signs the URL it called (reported; fails closed).
    if posted and signed.request.headers.get("Authorization") == header and "%" not in case.formatted_path:
        assert signed.status_code != 401, signed.content[:300]
    _check_answer(case, signed)
