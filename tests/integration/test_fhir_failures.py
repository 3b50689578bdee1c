"""When the EHR's FHIR server fails us: down, slow, dripping, or refusing the token.

The service cannot check a patient it cannot read, and must say so plainly
rather than answer "no cards" (which an EHR shows as "nothing wrong") or a 500.
What it promises (README "Prefetch and errors"; ``cds_services/prefetch.py``):
when no key at all could be read, a **412** whose OperationOutcome names every
prefetch key and why; when some could, a 200 with every card the rest allows
and a check-unavailable card naming the keys that could not be read; either
within the call's FHIR deadline, never echoing the token.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import pytest

from tests.conftest import ROOT
from tests.support import loopback_port, markdown_text

pytestmark = pytest.mark.integration

SERVICE = "/cds-services/ixabepilone-order-sign"
READ_TIMEOUT = 0.4  # s, CDS_FHIR_READ_TIMEOUT for the slow-server test
SLOW_SERVER_DELAY = 10.0  # s the slow server would take; released at teardown


def unreadable(reason: str, keys: list[str]) -> dict[str, Any]:
    """The 412 body when none of ``keys`` could be read from fhirServer, each for ``reason``."""
    keys = sorted(keys)
    return {
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": "error",
            "code": "incomplete",
            "diagnostics": "none of the data the checks need could be had: "
            + "; ".join(f"{key}: not prefetched; the FHIR server read failed: {reason}" for key in keys),
            "expression": [f"prefetch.{key}" for key in keys],
        }],
    }


def unavailable_text(answer: dict[str, Any]) -> str:
    return markdown_text(" ".join(c["detail"] for c in answer["cards"]
                                  if c["source"]["topic"]["code"] == "check-unavailable"))


@pytest.fixture(scope="module")
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: connections are refused, and no one else can take it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class SlowServer:
    """A FHIR server that accepts connections and then says nothing for ``SLOW_SERVER_DELAY`` seconds."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.requests: list[str] = []
        slow = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                slow.requests.append(self.path)
                slow.release.wait(SLOW_SERVER_DELAY)
                body = b'{"resourceType": "Bundle", "type": "searchset", "total": 0}'
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 64  # socketserver's default backlog of 5 would stall some of our 10 parallel queries

        self.httpd = Server(("127.0.0.1", loopback_port()), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="slow-fhir", daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def slow_server() -> Iterator[SlowServer]:
    with SlowServer() as server:
        yield server


@pytest.fixture(scope="module")
def keys(prefetch_templates) -> list[str]:
    return sorted(prefetch_templates)


# ---------------------------------------------------------------- down


def test_server_down_is_a_412_naming_every_key(service_factory, make_hook, fhir_patients, closed_port, keys):
    down = f"http://127.0.0.1:{closed_port}/fhir"
    client = service_factory({"fhir_servers": (down,), "allow_http_fhir": True}, clock=lambda: fhir_patients.now).test_client()
    began = time.monotonic()
    response = client.post(SERVICE, json=make_hook("ixa-clean", fhir_patients.order("ixa-clean"), down, "any-token"))
    assert time.monotonic() - began < 3.05  # refused at once, well inside the connect timeout
    assert response.status_code == 412
    assert response.get_json() == unreadable("could not connect to the FHIR server", keys)


def test_server_down_with_partial_prefetch_gives_the_cards_the_prefetch_allows(
    service_factory, make_hook, fhir_tools, fhir_server, fhir_patients, closed_port, prefetch_templates
):
    """Partial data never hides a card: ixa-platelets-low's labs were sent, so its card is there [L §4]."""
    down = f"http://127.0.0.1:{closed_port}/fhir"
    client = service_factory({"fhir_servers": (down,), "allow_http_fhir": True}, clock=lambda: fhir_patients.now).test_client()
    given = {}
    for key in ("patient", "labs", "medicationRequests"):
        query = prefetch_templates[key].replace("{{context.patientId}}", "ixa-platelets-low")
        status, given[key] = fhir_tools.request(fhir_server, None, "GET", query)
        assert status == 200
    response = client.post(SERVICE, json=make_hook(
        "ixa-platelets-low", fhir_patients.order("ixa-platelets-low"), down, "any-token", given))
    assert response.status_code == 200
    answer = response.get_json()
    assert [c["indicator"] for c in answer["cards"] if c["source"]["topic"]["code"] == "platelets-low"] == ["critical"]
    text = unavailable_text(answer)
    for key in prefetch_templates:
        named = f"prefetch.{key} could not be had (not prefetched; the FHIR server read failed: could not connect" in text
        assert named is (key not in given), key


# ---------------------------------------------------------------- slow


def test_slow_server_times_out_within_the_read_timeout(service_factory, make_hook, fhir_patients, slow_server, keys):
    client = service_factory(
        {
            "fhir_servers": (slow_server.base_url,),
            "allow_http_fhir": True,
            "fhir_read_timeout": READ_TIMEOUT,  # the connection is accepted at once; the answer never comes
        },
        clock=lambda: fhir_patients.now,
    ).test_client()
    began = time.monotonic()
    response = client.post(
        SERVICE, json=make_hook("ixa-clean", fhir_patients.order("ixa-clean"), slow_server.base_url, "any-token")
    )
    elapsed = time.monotonic() - began
    # All keys are read side by side: the wait is one read timeout, not ten.
    assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + 1.5, elapsed
    assert response.status_code == 412
    assert response.get_json() == unreadable("FHIR server did not answer in time", keys)  # the read timeout, not the deadline
    # The time went into waiting on the server, not into failing early: every query reached it.
    deadline = time.monotonic() + 2
    while len(slow_server.requests) < len(keys) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(slow_server.requests) == len(keys)
    assert all(
        ("patient=ixa-clean" in path or path == "/fhir/Patient/ixa-clean") and path.startswith("/fhir/")
        for path in slow_server.requests
    ), slow_server.requests


# ---------------------------------------------------------------- 401


@pytest.mark.parametrize("token", ["not-the-servers-token", None], ids=["wrong-token", "no-fhirAuthorization"])
def test_token_refused_by_the_real_server_is_a_412_not_a_500(local_service, make_hook, fhir_server, fhir_patients, keys, token):
    response = local_service.post(
        SERVICE, json=make_hook("ixa-clean", fhir_patients.order("ixa-clean"), fhir_server.base_url, token)
    )
    assert response.status_code == 412
    assert response.get_json() == unreadable("FHIR server refused access (401)", keys)
    assert "WWW-Authenticate" not in response.headers  # the caller's credentials to us were fine
    if token:
        assert token not in response.get_data(as_text=True)


# ---------------------------------------------------------------- dripping: one deadline per call

DEADLINE = 1.5  # s, CDS_FHIR_DEADLINE for the dripping-server tests


class DrippingServer(SlowServer):
    """A FHIR server that sends its headers at once, then one byte a second: every socket read
    succeeds, so only a deadline on the whole call can stop it (the read timeout never fires)."""

    def __init__(self) -> None:
        super().__init__()
        drip = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                drip.requests.append(self.path)
                body = b'{"resourceType": "Bundle", "type": "searchset", "total": 0}'
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for byte in body:
                    if drip.release.wait(1.0):
                        return
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:
                        return  # the service hung up, as it should at its deadline

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd.RequestHandlerClass = Handler


@pytest.fixture(scope="module")
def dripping_server() -> Iterator[DrippingServer]:
    with DrippingServer() as server:
        yield server


def test_a_dripping_server_is_cut_off_at_the_call_deadline_not_per_byte(
    service_factory, make_hook, fhir_patients, dripping_server, keys
):
    client = service_factory(
        {"fhir_servers": (dripping_server.base_url,), "allow_http_fhir": True, "fhir_read_timeout": 5.0,
         "fhir_deadline": DEADLINE},
        clock=lambda: fhir_patients.now,
    ).test_client()
    began = time.monotonic()
    response = client.post(SERVICE, json=make_hook(
        "ixa-clean", fhir_patients.order("ixa-clean"), dripping_server.base_url, "any-token"))
    elapsed = time.monotonic() - began
    # The read timeout (5 s) is per byte and would never fire; the body takes 60 s at one byte a second.
    assert DEADLINE <= elapsed < DEADLINE + 1.0, elapsed
    assert response.status_code == 412
    assert "within the call's deadline" in response.get_json()["issue"][0]["diagnostics"]


def test_a_dripping_server_for_some_keys_still_gives_the_cards_of_the_others(
    service_factory, make_hook, fhir_tools, fhir_server, fhir_patients, dripping_server, prefetch_templates
):
    client = service_factory(
        {"fhir_servers": (dripping_server.base_url,), "allow_http_fhir": True, "fhir_deadline": DEADLINE},
        clock=lambda: fhir_patients.now,
    ).test_client()
    given = {}
    for key in prefetch_templates:
        if key in ("medicationStatements", "procedures"):
            continue  # these two are left to the dripping server
        query = prefetch_templates[key].replace("{{context.patientId}}", "ixa-platelets-low")
        status, given[key] = fhir_tools.request(fhir_server, None, "GET", query)
        assert status == 200
    began = time.monotonic()
    response = client.post(SERVICE, json=make_hook(
        "ixa-platelets-low", fhir_patients.order("ixa-platelets-low"), dripping_server.base_url, "any-token", given))
    assert time.monotonic() - began < DEADLINE + 1.0
    answer = response.get_json()
    assert response.status_code == 200
    assert [c["indicator"] for c in answer["cards"] if c["source"]["topic"]["code"] == "platelets-low"] == ["critical"]
    text = unavailable_text(answer)
    assert "prefetch.medicationStatements could not be had" in text and "prefetch.procedures could not be had" in text
    assert "within the call's deadline" in text


# ---------------------------------------------------------------- dripping headers: the reads stop, not only the wait

SAMPLE_ORDER = "order-sign-platelets-low.json"
EMPTY_BUNDLE = b'{"resourceType": "Bundle", "type": "searchset", "total": 0}'


class HeaderDrippingServer(SlowServer):
    """A FHIR server that sends its status line, then its headers one byte a second: each byte
    resets the read timeout, and no body ever starts, so no check between chunks can end the read.
    ``open`` counts the connections it is still dripping into."""

    def __init__(self) -> None:
        super().__init__()
        drip = self
        self.open = 0
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    drip.open += 1
                try:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                    while not drip.release.wait(1.0):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                except OSError:
                    pass  # the service hung up
                finally:
                    with lock:
                        drip.open -= 1
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd.RequestHandlerClass = Handler


class QuickServer(SlowServer):
    """A FHIR server that answers every search at once with an empty Bundle."""

    def __init__(self) -> None:
        super().__init__()
        quick = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                quick.requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(EMPTY_BUNDLE)))
                self.end_headers()
                self.wfile.write(EMPTY_BUNDLE)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd.RequestHandlerClass = Handler


def test_reads_cut_at_the_deadline_leave_the_fhir_threads_free_for_other_servers(service_factory):
    """Before: the call answered at its deadline, but each read's thread stayed on the dripping
    server as long as it kept sending. With the FHIR threads all held so, a call whose FHIR server
    answered at once had every key time out in the queue (measured under gunicorn: five calls to a
    header-dripping server, then every call to a healthy one was a 412 after the full deadline)."""
    sample = json.loads((ROOT / "samples" / SAMPLE_ORDER).read_text(encoding="utf-8"))
    with HeaderDrippingServer() as dripping, QuickServer() as quick:
        client = service_factory(
            # Four FHIR threads: one call's ten keys are more than the pool holds.
            {"fhir_servers": (dripping.base_url, quick.base_url), "allow_http_fhir": True,
             "fhir_deadline": DEADLINE, "fhir_max_workers": 4},
            clock=lambda: datetime.now(UTC),
        ).test_client()
        began = time.monotonic()
        slow = client.post(SERVICE, json=dict(sample, prefetch={}, fhirServer=dripping.base_url))
        assert time.monotonic() - began < DEADLINE + 1.0
        assert slow.status_code == 412
        assert "within the call's deadline" in slow.get_json()["issue"][0]["diagnostics"]
        # The dripping server sees its connections closed at once, not when it stops sending.
        until = time.monotonic() + 3.0
        while dripping.open and time.monotonic() < until:
            time.sleep(0.05)
        assert dripping.open == 0
        began = time.monotonic()
        healthy = client.post(SERVICE, json=dict(sample, prefetch={}, fhirServer=quick.base_url))
        assert time.monotonic() - began < DEADLINE
        assert healthy.status_code == 200, healthy.get_data(as_text=True)[:500]
        assert "deadline" not in healthy.get_data(as_text=True)
        assert len(quick.requests) >= 10  # every key was read from the healthy server
