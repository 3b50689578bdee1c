"""What a client sees from the real server: gunicorn with the production
config (gunicorn.conf.py) in front of the app. Keep-alive, chunked bodies,
forwarded headers and the replay store across processes only show here; the
Flask test client has no connections and no worker processes."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

import pytest
import requests

from tests.conftest import ROOT, SAMPLES, load_json
from tests.serving.conftest import free_port
from tests.signing import bearer, client_claims, generate_ec_key, make_jwks, sign_token

ISS = "https://ehr.hospital.example/cds-client"
PUBLIC = "https://cds.hospital.example"
SIGN = "/cds-services/ixabepilone-order-sign"


@pytest.fixture(scope="module")
def key():
    return generate_ec_key("ehr-key-1", "ES384")


@pytest.fixture
def secured_env(key, tmp_path) -> dict[str, str]:
    """Authentication on, every other security setting at its default."""
    return {
        "CDS_TRUSTED_CLIENTS": json.dumps([{"iss": ISS, "jwks": make_jwks(key)}]),
        "CDS_PUBLIC_BASE_URL": PUBLIC,
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'shared.sqlite3'}",
    }


def token(key, path: str = SIGN) -> str:
    return sign_token(key, client_claims(ISS, PUBLIC + path))


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body (what gunicorn sends for Flask's answers)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the response body"
        rest += chunk
    return status, headers, rest[:length]


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(10)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def post_head(path: str, length: int | None, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def healthz(sock: socket.socket) -> int:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return read_response(sock)[0]


# --- Connection: close whenever the body was not read ------------------------


def test_refused_request_with_a_large_unread_body_says_connection_close(start_gunicorn, secured_env):
    """Before: 401 said keep-alive, gunicorn then dropped the connection after draining 64 KiB,
    and the client's next call on it failed."""
    server = start_gunicorn(env=secured_env)
    body = b" " * (512 * 1024)  # under the 1 MiB limit: refused for the missing JWT, never read
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(post_head(SIGN, len(body), {}) + body)
        status, headers, _ = read_response(sock)
        assert status == 401
        assert headers["connection"] == "close"
        assert closed_by_server(sock)


def test_too_large_body_says_connection_close(start_gunicorn, secured_env, key):
    server = start_gunicorn(env=secured_env)
    body = b" " * (2 * 1024 * 1024)  # over CDS_MAX_BODY_BYTES (1 MiB): 413 before reading
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(post_head(SIGN, len(body), {"Authorization": bearer(token(key))}))
        sock.sendall(body[:65536])
        status, headers, _ = read_response(sock)
        assert status == 413
        assert headers["connection"] == "close"


def test_a_request_read_to_its_end_keeps_the_connection(start_gunicorn, secured_env, key):
    """The counterpart: a 400 after reading the whole body keeps the connection usable."""
    server = start_gunicorn(env=secured_env)
    body = json.dumps({"hook": "order-sign", "padding": " " * 200_000}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(post_head(SIGN, len(body), {"Authorization": bearer(token(key))}) + body)
        status, headers, _ = read_response(sock)
        assert status == 400
        assert headers["connection"] == "keep-alive"
        assert healthz(sock) == 200  # the next call on the same connection works


def test_malformed_chunked_body_from_an_authenticated_client_is_400(start_gunicorn, secured_env, key):
    server = start_gunicorn(env=secured_env)
    head = post_head(SIGN, None, {"Authorization": bearer(token(key)), "Transfer-Encoding": "chunked"})
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head + b"zz\r\n{}\r\n0\r\n\r\n")
        status, headers, body = read_response(sock)
    assert status == 400, body
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    assert "chunked" in outcome["issue"][0]["diagnostics"]
    assert headers["connection"] == "close"


def read_after_half_close(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    sock.shutdown(socket.SHUT_WR)  # the client is done sending, and still reads the answer
    return read_response(sock)


def test_a_chunked_body_cut_off_by_the_client_is_a_400_saying_so(start_gunicorn, secured_env, key):
    """Before: Werkzeug's generic "The browser (or proxy) sent a request that this server could not understand"."""
    server = start_gunicorn(env=secured_env)
    head = post_head(SIGN, None, {"Authorization": bearer(token(key)), "Transfer-Encoding": "chunked"})
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head + b"100\r\n{\"hook\": ")  # a chunk of 256 bytes announced, 9 sent
        status, headers, body = read_after_half_close(sock)
    assert status == 400, body
    assert json.loads(body)["issue"][0]["diagnostics"] == (
        "the request body could not be read: the connection ended inside a chunk")
    assert headers["connection"] == "close"


def test_a_body_shorter_than_its_content_length_is_a_400_saying_so(start_gunicorn, secured_env, key):
    """Before: "malformed JSON at line 1 column 9", and keep-alive on a connection whose body never came."""
    server = start_gunicorn(env=secured_env)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(post_head(SIGN, 500, {"Authorization": bearer(token(key))}) + b'{"hook": ')
        status, headers, body = read_after_half_close(sock)
    assert status == 400, body
    assert json.loads(body)["issue"][0]["diagnostics"] == (
        "the request body ended after 9 of the 500 bytes its Content-Length announced")
    assert headers["connection"] == "close"


def test_hook_answers_are_not_cached(start_gunicorn, secured_env, key):
    server = start_gunicorn(env=secured_env)
    response = requests.post(server.base_url + SIGN, json=load_json(SAMPLES / "order-sign-platelets-low.json"),
                             headers={"Authorization": bearer(token(key))}, timeout=30)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"


# --- replay protection across processes -------------------------------------


@pytest.mark.parametrize(("store", "second"), [(None, 401), ("memory", 200)], ids=["default", "memory"])
def test_a_token_is_accepted_once_across_worker_processes(start_gunicorn, secured_env, key, store, second):
    """Two gunicorn processes on one host, as two workers are: with the default store a token
    accepted by one is a replay on the other; the memory store (an explicit choice) cannot see it."""
    env = dict(secured_env, **({"CDS_REPLAY_STORE": store} if store else {}))
    first_server, second_server = start_gunicorn(env=env), start_gunicorn(env=env)
    body = load_json(SAMPLES / "order-sign-platelets-low.json")
    headers = {"Authorization": bearer(token(key))}
    assert requests.post(first_server.base_url + SIGN, json=body, headers=headers, timeout=30).status_code == 200
    assert requests.post(second_server.base_url + SIGN, json=body, headers=headers, timeout=30).status_code == second


# --- forwarded headers ------------------------------------------------------


@pytest.mark.parametrize(("allow", "scheme"), [(None, "http"), ("127.0.0.1", "https")], ids=["default", "named-proxy"])
def test_forwarded_headers_are_trusted_only_from_a_named_proxy(start_gunicorn, allow, scheme):
    """gunicorn's own default trusts X-Forwarded-Proto from 127.0.0.1; gunicorn.conf.py trusts no one
    unless FORWARDED_ALLOW_IPS names the proxy."""
    env = {"FORWARDED_ALLOW_IPS": allow} if allow else {}
    server = start_gunicorn("tests.serving.echo_app:app", env, ready_path="/")
    seen: Any = requests.get(server.base_url + "/x", headers={"X-Forwarded-Proto": "https"}, timeout=10).json()
    assert seen["scheme"] == scheme


# --- refusing to start ------------------------------------------------------


def test_gunicorn_refuses_to_start_with_authentication_on_and_no_public_base_url(secured_env, tmp_path):
    """The shipped server config exits (it does not serve with aud taken from the Host header) and
    its log says what to set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update({k: v for k, v in secured_env.items() if k != "CDS_PUBLIC_BASE_URL"})
    env.update({"HOST": "127.0.0.1", "PORT": str(free_port()), "WEB_CONCURRENCY": "1"})
    started = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--no-control-socket",
                              "app:app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                             stdin=subprocess.DEVNULL)
    assert started.returncode != 0
    assert "CDS_PUBLIC_BASE_URL is not set" in started.stdout + started.stderr
    assert "CDS_PUBLIC_BASE_URL=https://" in started.stdout + started.stderr  # says what to set


# --- the CDS Hooks sandbox, as it called us ---------------------------------

SANDBOX_CAPTURES = ROOT.parent / "shared" / "realclient" / "sandbox"
SANDBOX_ISS = "https://sandbox.cds-hooks.org"


@pytest.mark.parametrize("name", ["order-select-platelets-low.json", "order-sign-platelets-low.json"])
def test_the_sandbox_requests_get_the_critical_platelet_card_from_the_real_server(start_gunicorn, tmp_path, name):
    """Each captured body, with a token shaped as the sandbox signs it (ES384, its kid and jku; a key of
    our own stands in for its published one), through gunicorn: platelets 80,000/mm3 [L §4]. The
    captures' labs are of 2026-11-30: an old count is flagged as old, never dismissed."""
    capture = load_json(SANDBOX_CAPTURES / name)
    header = capture["jwt_header"]
    stand_in = generate_ec_key(header["kid"], header["alg"])
    server = start_gunicorn(env={
        "CDS_TRUSTED_CLIENTS": json.dumps([{"iss": SANDBOX_ISS, "jwks": make_jwks(stand_in)}]),
        "CDS_PUBLIC_BASE_URL": PUBLIC,
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'shared.sqlite3'}",
    })
    body = capture["request"]
    path = f"/cds-services/ixabepilone-{body['hook']}"
    claims = client_claims(SANDBOX_ISS, PUBLIC + path, lifetime=300)
    assert sorted(claims) == sorted(capture["jwt_payload_claims"])
    signed = sign_token(stand_in, claims, headers={"jku": header["jku"], "typ": header["typ"]})
    response = requests.post(server.base_url + path, data=json.dumps(body), timeout=30,
                             headers={"Content-Type": "application/json", "Authorization": bearer(signed)})
    assert response.status_code == 200, response.text[:500]
    (platelets,) = [c for c in response.json()["cards"] if c["source"]["topic"]["code"] == "platelets-low"]
    assert platelets["indicator"] == "critical" and "80,000" in platelets["summary"]
    assert "order unreadable" not in response.text
