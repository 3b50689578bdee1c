"""JWT authentication and the audit line, through the HTTP endpoints (spec 2.0 §trusting-cds-clients)."""
from __future__ import annotations

import json
import logging
import time

import pytest
import responses

from cds_services.config import ConfigError
from tests.signing import bearer, client_claims, generate_ec_key, make_jwks, sign_token, unsigned_token
from tests.support import rule_codes

ISS = "https://ehr.example.org"
SIGN = "/cds-services/ixabepilone-order-sign"
AUD = "http://localhost" + SIGN


@pytest.fixture(scope="module")
def key():
    return generate_ec_key("ehr-key-1", "ES384")


@pytest.fixture
def secured(make_app, key):
    trusted = json.dumps([{"iss": ISS, "jwks": make_jwks(key)}])
    return make_app({"allow_unauthenticated": False, "trusted_clients": trusted}).test_client()


def call(client, body, token=None, url=SIGN):
    headers = {"Authorization": bearer(token)} if token else {}
    return client.post(url, data=json.dumps(body), content_type="application/json", headers=headers)


def test_signed_request_gets_cards(secured, key, sample_request):
    response = call(secured, sample_request, sign_token(key, client_claims(ISS, AUD)))
    assert response.status_code == 200
    assert "platelets-low" in rule_codes(response.get_json())


@pytest.mark.parametrize("case", ["none", "unsigned", "wrong-aud", "unknown-iss", "no-typ"])
def test_refused_tokens_are_401_without_detail(secured, key, sample_request, case, caplog):
    token = {
        "none": None,
        "unsigned": unsigned_token(client_claims(ISS, AUD)),
        "wrong-aud": sign_token(key, client_claims(ISS, "https://other.example/cds-services/x")),
        "unknown-iss": sign_token(key, client_claims("https://intruder.example", AUD)),
        "no-typ": sign_token(key, client_claims(ISS, AUD), headers={"typ": None}),
    }[case]
    response = call(secured, sample_request, token)
    assert response.status_code == 401
    assert response.get_json()["issue"][0]["diagnostics"] == "authentication required"
    assert response.headers["WWW-Authenticate"] == "Bearer"  # RFC 6750 §3, with no reason given away
    if token:
        assert token not in caplog.text


def test_replayed_token_is_refused(secured, key, sample_request):
    token = sign_token(key, client_claims(ISS, AUD))
    assert call(secured, sample_request, token).status_code == 200
    assert call(secured, sample_request, token).status_code == 401


def test_feedback_needs_a_token_too(secured):
    body = {"feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-25T15:00:00Z"}]}
    assert call(secured, body, url=SIGN + "/feedback").status_code == 401


def test_discovery_and_preflight_stay_open(secured):
    assert secured.get("/cds-services").status_code == 200
    preflight = secured.options(SIGN, headers={"Origin": "https://sandbox.cds-hooks.org",
                                               "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204


def test_service_refuses_to_start_without_trusted_clients(make_app):
    with pytest.raises(ConfigError):
        make_app({"allow_unauthenticated": False})


def test_audit_line_names_rules_and_never_the_token(secured, key, sample_request, caplog):
    token = sign_token(key, client_claims(ISS, AUD))
    with caplog.at_level(logging.INFO, logger="cds.audit"):
        call(secured, sample_request, token)
    records = [r for r in caplog.records if r.name == "cds.audit"]
    assert len(records) == 1
    line = records[0].getMessage()
    assert token not in line and "opaque" not in line
    for expected in ("platelets-low", ISS, sample_request["hookInstance"], "ixa-demo-1"):
        assert expected in line


def test_service_refuses_to_start_when_the_audience_would_come_from_the_host_header(make_app, key):
    trusted = json.dumps([{"iss": ISS, "jwks": make_jwks(key)}])
    with pytest.raises(ConfigError) as error:
        make_app({"allow_unauthenticated": False, "trusted_clients": trusted, "public_base_url": None})
    assert "CDS_PUBLIC_BASE_URL=https://" in str(error.value)  # says what to set


def test_audience_is_the_public_base_url_whatever_the_host_header(make_app, key, sample_request):
    trusted = json.dumps([{"iss": ISS, "jwks": make_jwks(key)}])
    client = make_app({"allow_unauthenticated": False, "trusted_clients": trusted,
                       "public_base_url": "https://cds.hospital.example"}).test_client()
    spoofed = "https://attacker.example" + SIGN
    headers = {"Host": "attacker.example", "X-Forwarded-Proto": "https"}
    token = sign_token(key, client_claims(ISS, spoofed))
    response = client.post(SIGN, json=sample_request, headers={**headers, "Authorization": bearer(token)})
    assert response.status_code == 401
    token = sign_token(key, client_claims(ISS, "https://cds.hospital.example" + SIGN))
    response = client.post(SIGN, json=sample_request, headers={**headers, "Authorization": bearer(token)})
    assert response.status_code == 200


# --- tokens as real EHRs issue them (through the endpoint, default settings) -------------------


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1.5e9 + 0.5], ids=["NaN", "Infinity", "fraction"])
def test_time_claims_that_are_not_whole_finite_seconds_are_401(secured, key, sample_request, claim, value, caplog):
    """exp NaN never expired, iat NaN passed the lifetime cap: NaN compares false with every bound."""
    now = int(time.time())
    claims = client_claims(ISS, AUD, now=now, nbf=now - 10)
    claims[claim] = value
    with caplog.at_level(logging.WARNING, logger="cds.security"):
        assert call(secured, sample_request, sign_token(key, claims)).status_code == 401
    assert f"{claim} is " in caplog.text and "not a whole number of seconds" in caplog.text


def test_an_epic_shaped_token_passes_with_the_default_lifetime(secured, key, sample_request):
    """Epic's CDS Hooks tokens: exp 15 minutes after iat, nbf 5 minutes before it (the former
    300 s default refused every one); a token living past the one-hour default does not pass."""
    now = int(time.time())
    epic = client_claims(ISS, AUD, now=now, lifetime=900, nbf=now - 300)
    assert call(secured, sample_request, sign_token(key, epic)).status_code == 200
    long_lived = client_claims(ISS, AUD, now=now, lifetime=2 * 3600)
    assert call(secured, sample_request, sign_token(key, long_lived)).status_code == 401


@responses.activate
def test_a_jku_naming_the_issuers_registered_jwks_url_is_allowed(make_app, key, sample_request):
    jwks_url = "https://ehr.example.org/.well-known/jwks.json"
    responses.get(jwks_url, json=make_jwks(key))
    client = make_app({"allow_unauthenticated": False,
                       "trusted_clients": json.dumps([{"iss": ISS, "jwks_url": jwks_url}])}).test_client()
    token = sign_token(key, client_claims(ISS, AUD), headers={"jku": jwks_url})  # no jku_allowlist entry
    assert call(client, sample_request, token).status_code == 200
    other = sign_token(key, client_claims(ISS, AUD), headers={"jku": "https://ehr.example.org/other-keys"})
    assert call(client, sample_request, other).status_code == 401
    assert [c.request.url for c in responses.calls] == [jwks_url]
