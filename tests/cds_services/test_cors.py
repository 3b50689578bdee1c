"""CORS for the CDS Hooks sandbox and other browser clients (spec 2.0 §CORS)."""
from __future__ import annotations

SANDBOX = "https://sandbox.cds-hooks.org"
PREFLIGHT = {"Origin": SANDBOX, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}


def test_preflight_from_an_allowed_origin(client):
    response = client.options("/cds-services/ixabepilone-order-sign", headers=PREFLIGHT)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == SANDBOX
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "Origin" in response.headers["Vary"]


def test_preflight_from_another_origin_is_refused(client):
    response = client.options("/cds-services", headers={**PREFLIGHT, "Origin": "https://evil.example"})
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_headers_on_errors_too(client):
    response = client.get("/cds-services/none/feedback", headers={"Origin": SANDBOX})
    assert response.status_code == 405
    assert response.headers["Access-Control-Allow-Origin"] == SANDBOX


def test_wildcard_origin_never_sends_credentials(make_app):
    client = make_app({"cors_origins": ("*",)}).test_client()
    response = client.get("/cds-services", headers={"Origin": "https://anywhere.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_listed_origin_with_credentials(make_app):
    client = make_app({"cors_origins": (SANDBOX,), "cors_allow_credentials": True}).test_client()
    response = client.options("/cds-services", headers=PREFLIGHT)
    assert response.headers["Access-Control-Allow-Origin"] == SANDBOX
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
