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
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import quote, quote_from_bytes

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from cds_services.schemas import load_schema, schema_errors
from tests.support import markdown_text, rule_codes

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

    def send(self, request, **kwargs):
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
        except BaseException as error:  # noqa: BLE001 (re-raised on the test's thread)
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


def service_cards(response, allowed: Collection[int] = frozenset({200})) -> list[dict[str, Any]] | None:
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
    return "\n".join(markdown_text(c["detail"]) for c in cards if c["source"]["topic"]["code"] == "check-unavailable")


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
valid_text = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), max_size=40),  # the whole Unicode range, astral planes included
    st.sampled_from(["\u202e", "\ufeff", "\x00", "e\u0301", "\U0001f9ec", "\u2028", "\ufb00" * 20]),
)
unicode_text = valid_text | LONE_SURROGATES  # lone surrogates: a 400 since read_json refuses them


def json_documents(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=False, allow_infinity=False), text,
    )
    return st.recursive(
        leaves, lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
        max_leaves=12,
    )


json_values = json_documents(unicode_text)
valid_json_values = json_documents(valid_text)  # where a 400 would skip the property under test
hostile_values: st.SearchStrategy[Any] = st.one_of(
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


# --- malformed bodies on every POST endpoint ------------------------------------

@FUZZ
@given(url=post_urls, data=st.binary(max_size=3000), content_type=json_content_types)
def test_arbitrary_bytes_never_5xx(hostile, url, data, content_type):
    checked(post_bytes(hostile, url, data, content_type), _url_status(url))


@FEW
@given(url=post_urls, data=st.binary(max_size=200), content_type=other_content_types)
def test_other_media_types_are_415(hostile, url, data, content_type):
    response = post_bytes(hostile, url, data, content_type)
    if url in SERVICES or url in FEEDBACK:
        assert checked(response, {415})["issue"][0]["code"] == "not-supported"
    else:
        checked(response, {404})


@FUZZ
@given(url=st.sampled_from([*SERVICES, *FEEDBACK]), cut=st.floats(min_value=0.0, max_value=0.999))
def test_truncated_json_is_400_naming_the_position(hostile, sample_request, url, cut):
    """A request cut short on the wire: any proper prefix of a JSON object is malformed."""
    text = json.dumps(sample_request if url in SERVICES else feedback_body(), indent=1).encode()
    body = checked(post_bytes(hostile, url, text[: int(len(text) * cut)]), {400})
    assert any(words in body["issue"][0]["diagnostics"] for words in ("malformed JSON at line", "body is empty"))


@FUZZ
@given(url=st.sampled_from([*SERVICES, *FEEDBACK]), position=st.floats(min_value=0.0, max_value=0.999),
       byte=st.integers(min_value=0, max_value=255))
def test_one_corrupted_byte_never_5xx(hostile, sample_request, url, position, byte):
    text = bytearray(json.dumps(sample_request if url in SERVICES else feedback_body()).encode())
    text[int(len(text) * position)] = byte
    checked(post_bytes(hostile, url, bytes(text)), _url_status(url))


@FUZZ
@given(url=st.sampled_from([*SERVICES, *FEEDBACK]), body=json_values)
def test_any_json_document_as_body_never_5xx(hostile, url, body):
    checked(post(hostile, url, body), _url_status(url))


# --- wrong types, huge values, unicode: anywhere in a valid request ---------------

@pytest.fixture(scope="module")
def sample_paths() -> list[tuple]:
    from tests.conftest import SAMPLES, load_json

    return paths_of(load_json(SAMPLES / "order-sign-platelets-low.json"))


@FUZZ
@given(data=st.data(), value=hostile_values)
def test_any_field_of_a_service_call_replaced_never_5xx(hostile, sample_request, sample_paths, data, value):
    path = data.draw(st.sampled_from(sample_paths), label="path")
    service_cards(post(hostile, SIGN, replaced(sample_request, path, value)), {200, 400, 412})


@FUZZ
@given(data=st.data(), value=hostile_values)
def test_any_field_of_an_order_select_call_replaced_never_5xx(hostile, hook_request, data, value):
    body = hook_request("order-select")
    path = data.draw(st.sampled_from(paths_of(body)), label="path")
    service_cards(post(hostile, SELECT, replaced(body, path, value)), {200, 400, 412})


@FUZZ
@given(data=st.data(), value=hostile_values)
def test_any_field_of_feedback_replaced_never_5xx(hostile, data, value):
    body = feedback_body()
    body["feedback"][0]["overrideReason"] = {"reason": {"system": "http://example.org/cds/override-reason",
                                                        "code": "benefit-outweighs-risk"}, "userComment": "ok"}
    path = data.draw(st.sampled_from(paths_of(body)), label="path")
    response = post(hostile, SIGN_FEEDBACK, replaced(body, path, value))
    answer = checked(response, {200, 400})
    if response.status_code == 200:
        assert answer == {"stored": 1}


@FUZZ
@given(data=st.data(), text=unicode_text)
def test_unicode_in_any_text_field_never_5xx(hostile, sample_request, sample_paths, data, text):
    strings = [p for p in sample_paths if isinstance(value_at(sample_request, p), str)]
    path = data.draw(st.sampled_from(strings), label="path")
    service_cards(post(hostile, SIGN, replaced(sample_request, path, text)), {200, 400, 412})


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


@pytest.mark.parametrize(("where", "status"), [
    (("prefetch", "labs", "entry", 0, "resource", "status"), ["final"]),
    (("prefetch", "labs", "entry", 0, "resource", "status"), {"code": "final"}),
    (("context", "draftOrders", "entry", 0, "resource", "status"), ["draft"]),
])
def test_fhir_status_that_is_not_a_string_is_not_a_500(hostile, sample_request, where, status):
    cards = service_cards(post(hostile, SIGN, replaced(sample_request, where, status)), {200, 400})
    assert cards is None or "check-unavailable" in rule_codes({"cards": cards})


def test_ixabepilone_draft_of_another_patient_is_reported_not_silent(hostile, sample_request):
    body = copy.deepcopy(sample_request)
    body["context"]["draftOrders"]["entry"][0]["resource"]["subject"] = {"reference": "Patient/someone-else"}
    cards = service_cards(post(hostile, SIGN, body), {200, 400})
    assert cards is None or "MedicationRequest/draft-ixa-1" in unavailable_detail(cards)


@FEW
@given(name=st.from_regex(r"zz[A-Za-z0-9]{0,12}", fullmatch=True), value=st.integers() | st.text(max_size=20))
def test_unknown_element_on_the_ixabepilone_draft_does_not_stop_a_check(hostile, sample_request, name, value):
    """An element no check reads never stops a check (issue "Real-world FHIR in", item 1)."""
    body = copy.deepcopy(sample_request)
    body["context"]["draftOrders"]["entry"][0]["resource"][name] = value
    assert_right_cards(service_cards(post(hostile, SIGN, body)))


def test_conflicting_duplicates_are_not_resolved_silently(hostile, sample_request):
    """Observation/plt-1 twice: 250,000/mm3 first, then the sample's 80,000/mm3."""
    high = platelets_resource(sample_request)
    high["valueQuantity"] = dict(high["valueQuantity"], value=250)
    cards = service_cards(post(hostile, SIGN, with_lab(sample_request, high, first=True)))
    assert platelet_cards(cards) or "Observation/plt-1" in unavailable_detail(cards)


def test_large_finite_numbers_are_still_accepted(hostile, sample_request):
    text = json.dumps(sample_request)[:-1] + ', "n": [1e308, -1.7976931348623157e308, 5e-324, 0.0, -0.0]}'
    assert_right_cards(service_cards(post_bytes(hostile, SIGN, text.encode())))


# --- nesting ----------------------------------------------------------------------

@FUZZ
@given(url=st.sampled_from([SIGN, SIGN_FEEDBACK]), depth=st.integers(min_value=1, max_value=150),
       kind=st.sampled_from(["list", "dict"]))
def test_nesting_is_bounded_at_the_configured_depth(hostile, sample_request, url, depth, kind):
    """The extra member sits at level 2 of the body, so its own depth counts from 2."""
    body = copy.deepcopy(sample_request if url == SIGN else feedback_body())
    body["x"] = nest(depth, kind)
    response = post(hostile, url, body)
    if 1 + depth > DEFAULT_MAX_DEPTH:
        assert "nested deeper than 64 levels" in checked(response, {400})["issue"][0]["diagnostics"]
    elif url == SIGN:
        assert_right_cards(service_cards(response))
    else:
        checked(response, {200})


def depth_of(value: Any) -> int:
    """Containers on the deepest path, the way the service counts (a scalar body is 0 deep)."""
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize(("depth", "status"), [(14, 200), (15, 200), (16, 400)])
def test_nesting_limit_is_configurable(make_app, sample_request, depth, status):
    """CDS_MAX_JSON_DEPTH=16: the sample (11 deep) passes, an extra member 15 deep makes the
    body 16 deep and passes, one level more is refused."""
    client = make_app(environ={"CDS_MAX_JSON_DEPTH": "16"}, session=NoNetwork()).test_client()
    assert depth_of(sample_request) < 16
    body = copy.deepcopy(sample_request)
    body["x"] = nest(depth, "list")
    assert depth_of(body) == depth + 1
    cards = service_cards(post(client, SIGN, body), {status})
    if status == 200:
        assert_right_cards(cards)
    else:
        assert depth_of(body) == 17


@pytest.mark.parametrize("opening", [b"[", b'{"a":', b'[{"a":'])
def test_nesting_as_deep_as_the_body_limit_allows_is_400_quickly(hostile, opening):
    """Half a million brackets: the decoder's own recursion guard, not a crash or a stall."""
    data = opening * (DEFAULT_MAX_BODY // len(opening) - 1)
    response = post_bytes(hostile, SIGN, data)
    assert "nested deeper than" in checked(response, {400})["issue"][0]["diagnostics"]
    assert response.elapsed < 1.0


# --- size ---------------------------------------------------------------------------

def _padded(body: Any, size: int) -> bytes:
    """``body`` as JSON padded with trailing whitespace (still valid JSON) to exactly ``size`` bytes."""
    data = json.dumps(body).encode()
    assert len(data) <= size
    return data + b" " * (size - len(data))


@pytest.mark.parametrize("extra", [0, 1])
def test_default_body_limit_is_one_mebibyte(hostile, sample_request, extra):
    response = post_bytes(hostile, SIGN, _padded(sample_request, DEFAULT_MAX_BODY + extra))
    if extra:
        assert "larger than the limit of 1048576 bytes" in checked(response, {413})["issue"][0]["diagnostics"]
    else:
        assert_right_cards(service_cards(response))


@pytest.mark.parametrize("url", [SIGN, SELECT, SIGN_FEEDBACK, SELECT_FEEDBACK])
@pytest.mark.parametrize("extra", [-1, 0, 1, 1000])
def test_body_limit_is_configurable(make_app, hook_request, url, extra):
    limit = 16_384
    client = make_app(environ={"CDS_MAX_BODY_BYTES": str(limit)}, session=NoNetwork()).test_client()
    body = hook_request("order-select" if url == SELECT else "order-sign") if url in SERVICES else feedback_body()
    response = post_bytes(client, url, _padded(body, limit + extra))
    if extra > 0:
        assert checked(response, {413})["issue"][0]["code"] == "too-costly"
    elif url in SERVICES:
        assert_right_cards(service_cards(response))
    else:
        assert checked(response, {200}) == {"stored": 1}


def test_body_without_content_length_is_cut_at_the_limit(make_app, sample_request):
    """Chunked upload (no Content-Length): the limit still holds while reading."""
    client = make_app(environ={"CDS_MAX_BODY_BYTES": "4096"}, session=NoNetwork()).test_client()
    stream = io.BytesIO(_padded(sample_request, 200_000))
    response = bounded(lambda: client.post(SIGN, input_stream=stream, content_type="application/json",
                                           environ_overrides={"wsgi.input_terminated": True}))
    checked(response, {413})


@FEW
@given(size=st.integers(min_value=50_000, max_value=1_000_000), field=st.sampled_from(
    [("hookInstance",), ("context", "userId"), ("context", "patientId"), ("fhirServer",),
     ("context", "draftOrders", "entry", 0, "resource", "id"), ("prefetch", "labs", "entry", 0, "resource", "id")]))
def test_huge_strings_are_answered_in_bounded_time(hostile, sample_request, size, field):
    """Strings up to the body limit in the fields the service reads first (and logs)."""
    service_cards(post(hostile, SIGN, replaced(sample_request, field, "x" * size)), {200, 400, 412})


@pytest.mark.parametrize("count", [10_000, 60_000])
def test_huge_arrays_are_answered_in_bounded_time(hostile, hook_request, count):
    """Many draft entries, selections and prefetch entries, each array near the body limit."""
    other = {"resource": {"resourceType": "MedicationRequest", "status": "draft", "intent": "order",
                          "subject": {"reference": f"Patient/{PATIENT}"},
                          "medicationCodeableConcept": {"text": "x"}}}
    body = hook_request("order-select")
    body["context"]["draftOrders"]["entry"].extend([other] * (count // 40))
    body["context"]["selections"] = ["MedicationRequest/draft-ixa-1"] * (count // 10)
    body["prefetch"]["conditions"] = {"resourceType": "Bundle", "type": "searchset", "entry": [{}] * count}
    response = post(hostile, SELECT, body)
    assert_right_cards(service_cards(response))


# --- FHIR content: wrong types, another patient, duplicates, unknown elements ----------

FHIR_TYPES = ["Patient", "Observation", "MedicationRequest", "MedicationStatement", "Condition", "Procedure",
              "Immunization", "AllergyIntolerance", "Bundle", "OperationOutcome", "Medication", "Encounter",
              "Practitioner", "Binary", "Parameters", "DocumentReference"]
resource_types = st.one_of(st.sampled_from(FHIR_TYPES), valid_text, st.integers(), st.none())


@st.composite
def foreign_resources(draw: st.DrawFn) -> dict[str, Any]:
    """A resource of any type (or none), with an id, maybe a subject, maybe junk members."""
    resource: dict[str, Any] = {"resourceType": draw(resource_types)}
    if draw(st.booleans()):
        resource["id"] = draw(st.from_regex(r"[A-Za-z0-9.\-]{1,64}", fullmatch=True))
    if draw(st.booleans()):
        resource["subject"] = {"reference": draw(st.sampled_from([f"Patient/{PATIENT}", "Patient/other-1", "Group/g"]))}
    resource.update(draw(st.dictionaries(st.from_regex(r"[a-z][A-Za-z]{0,15}", fullmatch=True), valid_json_values,
                                         max_size=3)))
    return resource


@FUZZ
@given(key=st.sampled_from(["labs", "vitals", "patient", "medicationRequests", "conditions", "allergies",
                            "procedures", "immunizations", "reproductive", "medicationStatements"]),
       extra=st.lists(foreign_resources(), min_size=1, max_size=6))
def test_wrong_resource_types_in_prefetch_do_not_hide_the_platelet_card(hostile, sample_request, key, extra):
    """Resources of any type under any prefetch key: never a 5xx, and the low platelets are still found."""
    body = copy.deepcopy(sample_request)
    current = body["prefetch"][key]
    if isinstance(current, dict) and current.get("resourceType") == "Bundle":
        current["entry"].extend({"resource": r} for r in extra)
    elif key != "patient":
        body["prefetch"][key] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in extra]}
    else:
        body["prefetch"][key] = extra[0]  # a single resource of the wrong type where the Patient belongs
        kind = extra[0]["resourceType"]
        if not isinstance(kind, str):  # not a FHIR resource at all: the request is wrong
            assert "prefetch.patient has no resourceType" in checked(post(hostile, SIGN, body), {400})["issue"][0]["diagnostics"]
            return
        if kind == "OperationOutcome":  # spec: "could not prefetch"; with no fhirServer to ask, 412
            checked(post(hostile, SIGN, body), {412})
            return
    assert_right_cards(service_cards(post(hostile, SIGN, body)))


@FUZZ
@given(other=st.from_regex(r"[A-Za-z0-9.\-]{1,64}", fullmatch=True).filter(lambda i: i != PATIENT),
       thousands=st.integers(min_value=1, max_value=99), first=st.booleans(),
       form=st.sampled_from(["Patient/{}", "https://ehr.example.org/fhir/Patient/{}", "Patient/{}/_history/3"]))
def test_prefetch_for_another_patient_is_ignored_and_reported(hostile, sample_request, other, thousands, first, form):
    """A newer, lower platelet count of another patient: never mixed in (the card still reads
    80,000 from our patient's result) and named on the check-unavailable card."""
    foreign = platelets_resource(sample_request)
    foreign.update(id="plt-foreign", subject={"reference": form.format(other)},
                   effectiveDateTime="2026-11-25T09:00:00Z")
    foreign["valueQuantity"] = dict(foreign["valueQuantity"], value=thousands)
    cards = service_cards(post(hostile, SIGN, with_lab(sample_request, foreign, first)))
    assert_right_cards(cards)
    detail = unavailable_detail(cards)
    assert "Observation/plt-foreign was left out" in detail and "another patient" in detail


def test_patient_resource_of_another_patient_is_reported(hostile, sample_request):
    body = copy.deepcopy(sample_request)
    body["prefetch"]["patient"] = dict(body["prefetch"]["patient"], id="someone-else")
    cards = service_cards(post(hostile, SIGN, body))
    assert_right_cards(cards)
    assert "Patient/someone-else was left out: it is another patient" in unavailable_detail(cards)


@FEW
@given(copies=st.integers(min_value=2, max_value=300), where=st.sampled_from(["same-bundle", "other-key"]))
def test_duplicate_resources_count_once(hostile, sample_request, copies, where):
    """The same Observation sent many times gives the same single card, not one per copy."""
    body = copy.deepcopy(sample_request)
    entry = body["prefetch"]["labs"]["entry"][0]
    if where == "same-bundle":
        body["prefetch"]["labs"]["entry"].extend([copy.deepcopy(entry)] * (copies - 1))
    else:
        body["prefetch"]["reproductive"] = {"resourceType": "Bundle", "type": "searchset", "entry": [entry] * copies}
    cards = service_cards(post(hostile, SIGN, body))
    assert_right_cards(cards)
    assert rule_codes({"cards": cards}) == rule_codes({"cards": service_cards(post(hostile, SIGN, sample_request))})


unknown_names = st.from_regex(r"zz[A-Za-z0-9]{0,12}", fullmatch=True)  # no FHIR element starts with "zz"


@FUZZ
@given(name=unknown_names, value=valid_json_values)
def test_unknown_element_beside_the_platelet_value_does_not_stop_the_platelet_card(hostile, sample_request, name, value):
    """An element no check reads never stops a check: the 80,000/mm3 result is still read."""
    body = copy.deepcopy(sample_request)
    body["prefetch"]["labs"]["entry"][0]["resource"][name] = value
    assert_right_cards(service_cards(post(hostile, SIGN, body)))


@FUZZ
@given(name=unknown_names, value=valid_json_values)
def test_unknown_element_inside_the_platelet_value_is_reported_not_ignored(hostile, sample_request, name, value):
    """Inside the valueQuantity a check reads, an element R4 does not define (a misspelt
    "comparator"?) means the value cannot be read exactly: said, never guessed and never silent."""
    body = copy.deepcopy(sample_request)
    body["prefetch"]["labs"]["entry"][0]["resource"]["valueQuantity"][name] = value
    cards = service_cards(post(hostile, SIGN, body))
    assert platelet_cards(cards) == []
    assert "Observation/plt-1" in unavailable_detail(cards)
    assert any(c["indicator"] in ("warning", "critical") and "Platelets" in c["summary"] for c in cards), cards


@FEW
@given(name=unknown_names, value=valid_json_values)
def test_unknown_element_on_another_resource_does_not_hide_the_platelet_card(hostile, sample_request, name, value):
    body = copy.deepcopy(sample_request)
    body["prefetch"]["labs"]["entry"][1]["resource"][name] = value  # the neutrophil count
    cards = service_cards(post(hostile, SIGN, body))
    assert_right_cards(cards)


# --- discovery, health, the OpenAPI document, unknown paths and methods --------------

header_names = st.from_regex(r"X-[A-Za-z0-9-]{1,20}", fullmatch=True)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)


@FUZZ
@given(path=st.sampled_from(OPEN_GETS), query=st.dictionaries(unicode_text.filter(
    lambda s: not any("\ud800" <= c <= "\udfff" for c in s)), st.text(max_size=50), max_size=5),
    headers=st.dictionaries(header_names, header_values, max_size=4))
def test_open_endpoints_ignore_query_and_headers(hostile, path, query, headers):
    plain = checked(bounded(lambda: hostile.get(path)), {200})
    fuzzed = checked(bounded(lambda: hostile.get(path, query_string=query, headers=headers)), {200})
    assert fuzzed == plain


def test_served_openapi_document_is_valid_openapi_3_1(hostile):
    from openapi_spec_validator import validate

    validate(checked(hostile.get("/openapi.json"), {200}))


@FUZZ
@given(segments=st.lists(st.one_of(st.text(st.characters(codec="utf-8"), min_size=1, max_size=30).map(
    lambda s: quote(s, safe="")), st.binary(min_size=1, max_size=30).map(lambda b: quote_from_bytes(b, safe=""))),
    min_size=1, max_size=4),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]), prefix=st.sampled_from(["/", "/cds-services/"]))
def test_unknown_paths_and_methods_are_json_404_or_405(hostile, segments, method, prefix):
    path = prefix + "/".join(segments)
    response = bounded(lambda: hostile.open(path, method=method, data=b"{}", content_type="application/json"))
    checked(response, {200, 400, 404, 405, 412, 415})
    if response.status_code == 405:
        assert response.headers["Allow"]


# --- a burst of hostile requests, then a valid one -----------------------------------

hostile_requests = st.one_of(
    st.tuples(post_urls, st.binary(max_size=500)),
    st.tuples(post_urls, json_values.map(lambda v: json.dumps(v).encode())),
    st.tuples(st.just(SIGN), st.builds(nest, st.integers(60, 200), st.just("list")).map(lambda v: json.dumps(v).encode())),
    st.tuples(st.just(SIGN_FEEDBACK), LONE_SURROGATES.map(
        lambda s: json.dumps({"feedback": [{"card": s, "outcome": "overridden",
                                            "outcomeTimestamp": "2026-11-25T14:05:00Z"}]}).encode())),
    st.tuples(st.just(SIGN), st.just(b"9" * 5000)),
)


@pytest.mark.parametrize("authenticated", [False, True])
def test_valid_request_after_a_burst_still_gets_the_right_cards(make_app, sample_request, authenticated):
    """Hostile requests of every kind on one app, then the README's sample: the same single
    critical platelets-low card as on a fresh app, feedback still stored, discovery unchanged."""
    if authenticated:
        from tests.signing import bearer, client_claims, generate_ec_key, make_jwks, sign_token

        iss, key = "https://ehr.example.org", generate_ec_key("ehr-key-1", "ES384")
        trusted = json.dumps([{"iss": iss, "jwks": make_jwks(key)}])
        client = make_app({"allow_unauthenticated": False, "trusted_clients": trusted},
                          session=NoNetwork()).test_client()

        def token(url: str) -> dict[str, str]:
            return {"Authorization": bearer(sign_token(key, client_claims(iss, "http://localhost" + url)))}
    else:
        client = make_app(session=NoNetwork()).test_client()

        def token(url: str) -> dict[str, str]:
            return {}

    discovery = checked(client.get("/cds-services"), {200})
    statuses: list[int] = []

    @settings(FUZZ, max_examples=60)
    @given(request=hostile_requests, signed=st.booleans())
    def burst(request: tuple[str, bytes], signed: bool) -> None:
        url, data = request
        headers = token(url) if signed else {}
        response = post_bytes(client, url, data, headers=headers)
        checked(response, _url_status(url) | ({401} if authenticated else set()))
        statuses.append(response.status_code)

    burst()
    assert len(statuses) >= 30 and all(s < 500 for s in statuses)
    if authenticated:
        assert 401 in statuses  # the unsigned half never got past authentication

    assert_right_cards(service_cards(post_bytes(client, SIGN, json.dumps(sample_request).encode(),
                                                headers=token(SIGN))))
    stored = post_bytes(client, SIGN_FEEDBACK, json.dumps(feedback_body()).encode(), headers=token(SIGN_FEEDBACK))
    assert checked(stored, {200}) == {"stored": 1}
    assert checked(client.get("/cds-services"), {200}) == discovery


# --- nesting inside the prefetch: checked on what is read -------------------------------

def test_a_prefetch_resource_nested_too_deep_is_reported_and_the_rest_is_checked(hostile, sample_request):
    """The limit applies to every structure the service reads: a read resource nested past it is
    named on check-unavailable and not read; the call itself still answers."""
    body = copy.deepcopy(sample_request)
    neutrophils = body["prefetch"]["labs"]["entry"][1]["resource"]
    neutrophils["valueQuantity"]["extension"] = [{"url": "http://example.org/x", "valueString": "x",
                                                 "extension": nest(DEFAULT_MAX_DEPTH, "list")}]
    cards = service_cards(post(hostile, SIGN, body))
    assert_right_cards(cards)  # the platelet result was read as usual
    assert f"{neutrophils['resourceType']}/{neutrophils['id']} is nested deeper than 64 levels" in \
        unavailable_detail(cards)


def test_an_unread_prefetch_resource_may_nest_deeper_than_the_limit(hostile, sample_request):
    """A resource no check reads (a glucose result) is never turned into Python, whatever its depth."""
    body = copy.deepcopy(sample_request)
    body["prefetch"]["labs"]["entry"].append({"resource": {
        "resourceType": "Observation", "id": "glucose-1", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "subject": {"reference": f"Patient/{body['context']['patientId']}"}, "note": nest(200, "list")}})
    assert_right_cards(service_cards(post(hostile, SIGN, body)))


def test_nesting_past_what_the_parser_takes_is_400_anywhere(hostile, sample_request):
    """simdjson refuses past 1,024 levels; the exact path then names the configured limit."""
    body = copy.deepcopy(sample_request)
    body["prefetch"]["labs"]["entry"][0]["resource"]["note"] = "DEEP"
    text = json.dumps(body).replace('"DEEP"', "[" * 1100 + "]" * 1100)
    response = post_bytes(hostile, SIGN, text.encode())
    assert "nested deeper than 64 levels" in checked(response, {400})["issue"][0]["diagnostics"]
