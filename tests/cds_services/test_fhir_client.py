"""The outbound FHIR client: environment proxies and ~/.netrc."""
from __future__ import annotations

import pytest
import requests
import responses

from cds_services.fhir_client import FhirClient, FhirClientSettings, uses_proxy

SETTINGS = FhirClientSettings(connect_timeout=1, read_timeout=1, max_workers=2, max_response_bytes=1024)


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, False),
    ({"PATH": "/usr/bin", "NO_PROXY": "localhost"}, False),
    ({"HTTPS_PROXY": "http://proxy.hospital.example:3128"}, True),
    ({"http_proxy": "http://proxy.hospital.example:3128"}, True),
    ({"ALL_PROXY": "socks5://proxy.hospital.example:1080"}, True),
    ({"HTTPS_PROXY": ""}, False),
])
def test_uses_proxy_reads_the_proxy_variables_in_any_case(environ, expected):
    assert uses_proxy(environ) is expected


def test_without_a_proxy_the_environment_and_netrc_are_not_consulted(monkeypatch, tmp_path):
    # A ~/.netrc entry for the EHR host must not add credentials to our calls.
    (tmp_path / ".netrc").write_text("machine ehr.example.org login intruder password secret\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    client = FhirClient(SETTINGS, requests.Session())
    try:
        assert client.session.trust_env is False
        prepared = client.session.prepare_request(requests.Request("GET", "https://ehr.example.org/fhir/Patient/p1"))
        settings = client.session.merge_environment_settings(prepared.url, {}, None, None, None)
        assert "Authorization" not in prepared.headers and settings["proxies"] == {}
    finally:
        client.close()


def test_a_configured_proxy_is_honoured(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.hospital.example:3128")
    client = FhirClient(SETTINGS, requests.Session())
    try:
        assert client.session.trust_env is True
        settings = client.session.merge_environment_settings("https://ehr.example.org/fhir/Patient/p1", {}, None, None, None)
        assert settings["proxies"]["https"] == "http://proxy.hospital.example:3128"
    finally:
        client.close()


@responses.activate
def test_cookies_from_a_fhir_server_are_never_sent_back():
    """The session is shared by every user and patient; a server-set cookie must not cross calls."""
    base = "https://ehr.example.org/fhir"
    responses.get(f"{base}/Patient/p1", json={"resourceType": "Patient", "id": "p1"},
                  headers={"Set-Cookie": "JSESSIONID=user-a-session; Path=/; Secure"})
    responses.get(f"{base}/Patient/p2", json={"resourceType": "Patient", "id": "p2"})
    client = FhirClient(SETTINGS, requests.Session())
    try:
        client.read(base, "Patient/p1", "token-of-user-a")
        client.read(base, "Patient/p2", "token-of-user-b")
    finally:
        client.close()
    assert "Cookie" not in responses.calls[1].request.headers
    assert len(client.session.cookies) == 0


class _StallingServer:
    """Sends its status line and headers at once, then part of the body, then nothing."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.release = threading.Event()
        stall = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.write(b'{"resourceType": ')
                self.wfile.flush()
                stall.release.wait(5)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("deadline_in", [None, 0.3])
def test_a_body_that_stops_arriving_is_a_fhir_error_never_an_exception(deadline_in):
    """Found under load in CI: a read timeout in the middle of the body escaped as urllib3's own
    exception (the body is read with read1, which requests does not wrap) and made a 500."""
    import time

    from cds_services.fhir_client import FhirError

    server = _StallingServer()
    client = FhirClient(FhirClientSettings(connect_timeout=1, read_timeout=0.2, max_workers=2, max_response_bytes=1024))
    try:
        deadline = None if deadline_in is None else time.monotonic() + deadline_in
        (result,) = client.read_many(server.base, {"labs": "Observation?patient=p1"}, None, deadline).values()
        assert isinstance(result, FhirError)
        assert result.reason in ("FHIR server did not answer in time",
                                 "FHIR server did not send its answer within the call's deadline",
                                 "FHIR server did not answer within the call's deadline")
    finally:
        client.close()
        server.close()
