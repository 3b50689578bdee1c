"""Hostile input to every endpoint: the service never answers 5xx, never hangs,
always answers JSON (an OperationOutcome for every error), keeps its limits,
and still gives the right cards to a valid request after a burst of bad ones.

Property-based (hypothesis), derandomized so CI runs the same examples every
time; few examples per property so the whole module stays in seconds. The
schema-driven fuzzing of the OpenAPI document is in test_openapi_fuzz.py; here
are the shapes a schema cannot express: bytes that are not JSON, nesting and
size at the limits, lone surrogates, FHIR resources of the wrong type, for
another patient, duplicated, or with elements FHIR does not define.
"""
from __future__ import annotations

import copy
import io
import json
import threading
import time
from datetime import datetime, timedelta
from typing import Any, Callable
from urllib.parse import quote, quote_from_bytes

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from cds_services.schemas import load_schema, schema_errors
from tests.support import rule_codes

SIGN = "/cds-services/ixabepilone-order-sign"
SELECT = "/cds-services/ixabepilone-order-select"
SIGN_FEEDBACK = SIGN + "/feedback"
SELECT_FEEDBACK = SELECT + "/feedback"
SERVICES = (SIGN, SELECT)
FEEDBACK = (SIGN_FEEDBACK, SELECT_FEEDBACK)
OPEN_GETS = ("/cds-services", "/healthz", "/openapi.json")
PATIENT = "ixa-demo-1"  # samples/order-sign-platelets-low.json
DEFAULT_MAX_BODY = 1024 * 1024  # issue 4: "Body size limit configurable (default 1 MB)"
DEFAULT_MAX_DEPTH = 64  # CDS_MAX_JSON_DEPTH default

# A call takes milliseconds in-process; the bound is generous so a slow CI
# machine does not flake, and tight enough that a hang or a quadratic blow-up fails.
REQUEST_SECONDS = 3.0

# One app per test, shared by that test's examples: sharing it is the point (a
# burst must not leave state behind), and building one per example would cost
# more than the requests. Hence the function_scoped_fixture health check is off.
FUZZ = settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,  # time is bounded per request by bounded() below, with a thread, so a hang fails instead of blocking CI
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(FUZZ, max_examples=15)

_OUTCOME = Draft202012Validator(load_schema("openapi")["components"]["schemas"]["OperationOutcome"])


# --- helpers -------------------------------------------------------------------

class NoNetwork(requests.Session):
    """The FHIR client's session: no hostile request may reach the network."""

    def send(self, request, **kwargs):  # noqa: ANN001 - requests' signature
        raise requests.ConnectionError(f"test: no network ({request.url})")


@pytest.fixture
def hostile(make_app):
    """A test client on an app that cannot reach any FHIR server."""
    return make_app(session=NoNetwork()).test_client()


def bounded(send: Callable[[], Any], seconds: float = REQUEST_SECONDS) -> Any:
    """Run one request on a daemon thread; fail (not block) if it has not answered in ``seconds``."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["response"] = send()
        except BaseException as error:  # re-raised on the test's thread
            box["error"] = error

    started = time.perf_counter()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"no answer within {seconds} s: the request hangs"
    if "error" in box:
        raise box["error"]
    box["response"].elapsed = time.perf_counter() - started
    return box["response"]


def post_bytes(client, url: str, data: bytes, content_type: str = "application/json", **kwargs: Any):
    return bounded(lambda: client.post(url, data=data, content_type=content_type, **kwargs))


def post(client, url: str, body: Any):
    # ensure_ascii (the default) writes lone surrogates as \\udXXX escapes, as a hostile client may.
    return post_bytes(client, url, json.dumps(body).encode())


def checked(response, allowed: set[int]) -> Any:
    """The parsed JSON body, after the checks every answer must pass."""
    text = response.get_data(as_text=True)
    assert response.status_code < 500, text[:500]
    assert response.status_code in allowed, (response.status_code, text[:500])
    assert response.mimetype == "application/json", (response.mimetype, text[:200])
    assert "Traceback" not in text
    body = json.loads(text)
    if response.status_code >= 400:
        errors = [e.message for e in _OUTCOME.iter_errors(body)]
        assert errors == [], (errors, body)
    return body


def service_cards(response, allowed: set[int] = frozenset({200})) -> list[dict[str, Any]] | None:
    """Cards of a 200 (checked against the CDS Hooks response schema), None for an error."""
    body = checked(response, set(allowed))
    if response.status_code != 200:
        return None
    assert schema_errors("service_response", body) == []
    return body["cards"]


def platelet_cards(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in cards if c["source"]["topic"]["code"] == "platelets-low"]


def assert_right_cards(cards: list[dict[str, Any]] | None) -> None:
    """The sample's answer: exactly one critical platelets-low card, from the 80,000/mm3 result."""
    assert cards is not None
    platelets = platelet_cards(cards)
    assert len(platelets) == 1, rule_codes({"cards": cards})
    assert platelets[0]["indicator"] == "critical"
    assert "80,000" in platelets[0]["summary"] + platelets[0]["detail"]


def unavailable_detail(cards: list[dict[str, Any]]) -> str:
    return "\n".join(c["detail"] for c in cards if c["source"]["topic"]["code"] == "check-unavailable")


def nest(depth: int, kind: str) -> Any:
    """A value ``depth`` containers deep (``[[[]]]`` or ``{"a":{"a":{}}}``), built without recursion."""
    value: Any = [] if kind == "list" else {}
    for _ in range(depth - 1):
        value = [value] if kind == "list" else {"a": value}
    return value


def paths_of(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys and indexes) to a node of a JSON document."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths_of(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths_of(child, (*prefix, index))
    return found


def value_at(document: Any, path: tuple) -> Any:
    for key in path:
        document = document[key]
    return document


def replaced(document: Any, path: tuple, value: Any) -> Any:
    copied = copy.deepcopy(document)
    node = copied
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copied


def with_lab(sample: dict[str, Any], resource: dict[str, Any], first: bool = False) -> dict[str, Any]:
    body = copy.deepcopy(sample)
    entries = body["prefetch"]["labs"]["entry"]
    entry = {"resource": resource}
    entries.insert(0, entry) if first else entries.append(entry)
    return body


def platelets_resource(sample: dict[str, Any]) -> dict[str, Any]:
    resource = sample["prefetch"]["labs"]["entry"][0]["resource"]
    assert resource["code"]["coding"][0]["code"] == "777-3"  # LOINC platelets
    return copy.deepcopy(resource)


def feedback_body() -> dict[str, Any]:
    return {"feedback": [{"card": "0b7e9f52-4a1d-4c5e-9a0b-6f1e2d3c4b5a", "outcome": "overridden",
                          "outcomeTimestamp": "2026-11-25T14:05:00.25Z"}]}


# --- strategies ----------------------------------------------------------------

LONE_SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "a\ud83dz"])
unicode_text = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), max_size=40),  # the whole Unicode range, astral planes included
    st.sampled_from(["\u202e", "\ufeff", "\x00", "e\u0301", "\U0001f9ec", "\u2028", "ﬀ" * 20]),
    LONE_SURROGATES,
)
json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False), unicode_text,
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(unicode_text, children, max_size=4),
    max_leaves=12,
)
hostile_values = st.one_of(
    json_values,
    # Huge strings: "\u00e9" is written as a 6-byte escape, so 150,000 stay under the 1 MiB limit.
    st.integers(min_value=10_000, max_value=150_000).map(lambda n: "\u00e9" * n),
    st.integers(min_value=1_000, max_value=60_000).map(lambda n: [{}] * n),  # huge arrays
    st.builds(nest, st.integers(min_value=1, max_value=100), st.sampled_from(["list", "dict"])),  # deep nesting
)
json_content_types = st.sampled_from(["application/json", "application/fhir+json", "application/json; charset=utf-8"])
other_content_types = st.one_of(
    st.sampled_from(["text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data", ""]),
    st.from_regex(r"[a-z]{1,10}/[a-z0-9.+-]{1,20}", fullmatch=True).filter(
        lambda t: t != "application/json" and not (t.startswith("application/") and t.endswith("+json"))),
)
post_urls = st.sampled_from([*SERVICES, *FEEDBACK, "/cds-services/not-a-service", "/cds-services/x/feedback"])


def _url_status(url: str) -> set[int]:
    if url in SERVICES:
        return {200, 400, 412, 413, 415}
    if url in FEEDBACK:
        return {200, 400, 413, 415}
    return {404, 413, 415}


# --- regressions: bugs these tests found -------------------------------------------

@pytest.mark.parametrize("where", ["card", "userComment", "extension-key"])
def test_lone_surrogate_in_feedback_is_400_not_500(hostile, where):
    """Found by hypothesis: "\\ud800" decodes to a string that cannot be stored as UTF-8 (500)."""
    body = feedback_body()
    item = body["feedback"][0]
    if where == "card":
        item["card"] = "\ud800"
    elif where == "userComment":
        item["overrideReason"] = {"userComment": "reason \udfff"}
    else:
        item["extension"] = {"\udc00": 1}
    body = checked(post(hostile, SIGN_FEEDBACK, body), {400})
    assert "unpaired surrogate" in body["issue"][0]["diagnostics"]


def test_lone_surrogate_in_a_service_call_is_400(hostile, sample_request):
    body = replaced(sample_request, ("context", "userId"), "Practitioner/\ud83d")
    assert "unpaired surrogate" in checked(post(hostile, SIGN, body), {400})["issue"][0]["diagnostics"]


def test_surrogate_pair_escapes_are_valid_json(hostile, sample_request):
    """Only unpaired surrogates are refused: an escaped pair is one astral character (RFC 8259 §7)."""
    text = json.dumps(replaced(sample_request, ("context", "userId"), "Practitioner/\U0001f9ec"))
    assert "\\ud83e\\uddec" in text
    assert_right_cards(service_cards(post_bytes(hostile, SIGN, text.encode())))
    escaped_backslash = json.dumps(replaced(sample_request, ("context", "userId"), "Practitioner/\\ud800"))
    assert_right_cards(service_cards(post_bytes(hostile, SIGN, escaped_backslash.encode())))


@pytest.mark.parametrize("url", [SIGN, SIGN_FEEDBACK])
@pytest.mark.parametrize("digits", [4300, 4301, 100_000])
def test_integer_with_thousands_of_digits_is_400_not_500(hostile, sample_request, url, digits):
    """Found by hypothesis: Python refuses to convert integers over 4300 digits (ValueError, 500)."""
    body = sample_request if url == SIGN else feedback_body()
    text = json.dumps(body)[:-1] + ', "n": ' + "9" * digits + "}"
    response = post_bytes(hostile, url, text.encode())
    if digits <= 4300:
        checked(response, {200})
    else:
        assert "number" in checked(response, {400})["issue"][0]["diagnostics"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
def test_nan_and_infinity_are_not_json_400(hostile, sample_request, literal):
    """Found by hypothesis: Python's decoder accepts NaN and Infinity (not JSON, RFC 8259 §6) and
    turns 1e400 into inf; either could reach a lab value or be echoed back in a suggestion."""
    text = json.dumps(sample_request).replace('"value": 80,', f'"value": {literal},', 1)
    assert literal in text
    body = checked(post_bytes(hostile, SIGN, text.encode()), {400})
    assert "number" in body["issue"][0]["diagnostics"]


def test_large_finite_numbers_are_still_accepted(hostile, sample_request):
    text = json.dumps(sample_request)[:-1] + ', "n": [1e308, -1.7976931348623157e308, 5e-324, 0.0, -0.0]}'
    assert_right_cards(service_cards(post_bytes(hostile, SIGN, text.encode())))
