"""Trusted-client configuration: good documents load, and each kind of
mistake stops the start with a message that says where it is."""
from __future__ import annotations

import json
from typing import Any

import pytest

from cds_services.config import ConfigError as SettingsConfigError
from cds_services.security.clients import ConfigError, load_trusted_clients, parse_trusted_clients
from tests.signing import generate_ec_key, generate_rsa_key, make_jwks

ISS = "https://ehr.example.org"


@pytest.fixture(scope="module")
def jwks() -> dict[str, Any]:
    return make_jwks(generate_ec_key(kid="k1"))


def test_loads_from_json_text_and_from_a_file(tmp_path, clients_config):
    text = json.dumps(clients_config)
    from_text = load_trusted_clients(text)
    path = tmp_path / "clients.json"
    path.write_text(text, encoding="utf-8")
    from_file = load_trusted_clients(str(path))
    assert from_text == from_file
    fetch = from_file.get("https://ehr-fetch.example.org")
    assert fetch is not None
    assert fetch.jwks_url == "https://ehr-fetch.example.org/.well-known/jwks.json"
    assert fetch.tenants == ("2ddd6c3a-8e9a-44c6-a305-52111ad302a2",)
    assert fetch.fhir_servers == ("https://ehr-fetch.example.org/fhir",)
    static = from_file.get("https://ehr-static.example.org")
    assert static is not None and set(static.jwks) == {"ec-384", "rsa-384"}
    assert from_file.get("https://unknown.example.org") is None


def test_object_form_with_version(jwks):
    clients = load_trusted_clients(json.dumps({"version": "1", "issuers": [{"iss": ISS, "jwks": jwks}]}))
    assert [c.iss for c in clients.issuers] == [ISS]


def test_entries_are_frozen(jwks):
    client = parse_trusted_clients([{"iss": ISS, "jwks": jwks}]).issuers[0]
    with pytest.raises(AttributeError):
        client.iss = "https://evil.example.com"  # type: ignore[misc]
    with pytest.raises(TypeError):
        client.jwks["k2"] = {}  # type: ignore[index]


def test_fhir_servers_are_normalised(jwks):
    client = parse_trusted_clients(
        [{"iss": ISS, "jwks": jwks, "fhir_servers": ["https://EHR.example.org/fhir/"]}]
    ).issuers[0]
    assert client.fhir_servers == ("https://ehr.example.org/fhir",)


def test_config_error_is_the_settings_config_error():
    with pytest.raises(SettingsConfigError):
        load_trusted_clients("[]")
    assert issubclass(ConfigError, ValueError)


def _private_jwk() -> dict[str, Any]:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    jwk = jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()), as_dict=True)
    return dict(jwk, kid="k1")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("[not json", "invalid JSON"),
        ("not json", "neither JSON nor an existing file"),
        ("/no/such/clients.json", "neither JSON nor an existing file"),
        ("{}", "non-empty list"),
        ("[]", "non-empty list"),
        ('{"issuers": [], "extra": 1}', "unknown top-level"),
        ('["https://ehr.example.org"]', "expected an object"),
        ('[{"jwks_url": "https://ehr.example.org/jwks"}]', "'iss' is required"),
        ('[{"iss": "https://ehr.example.org"}]', "no key source"),
        ('[{"iss": "x", "jwks_url": "https://a/jwks", "jwks_uri": "https://a/jwks"}]', "unknown field(s) jwks_uri"),
        ('[{"iss": "x", "jwks_url": "http://ehr.example.org/jwks"}]', "not an https URL"),
        ('[{"iss": "x", "jwks_url": "https://user@ehr.example.org/jwks"}]', "not an https URL"),
        ('[{"iss": "x", "jku_allowlist": ["http://ehr.example.org/jwks"]}]', "not an https URL"),
        ('[{"iss": "x", "jku_allowlist": "https://ehr.example.org/jwks"}]', "list of non-empty strings"),
        ('[{"iss": "x", "jwks_url": "https://a/jwks", "tenants": [""]}]', "tenants"),
        ('[{"iss": "x", "jwks_url": "https://a/jwks", "fhir_servers": ["https://u:p@ehr/fhir"]}]', "userinfo"),
        ('[{"iss": "x", "jwks_url": "https://a/jwks", "fhir_servers": ["ftp://ehr/fhir"]}]', "fhir_servers"),
        ('[{"iss": "x", "jwks": {"keys": []}}]', "non-empty 'keys'"),
        ('[{"iss": "x", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]}}]', "symmetric"),
        ('[{"iss": "x", "jwks": {"keys": [{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]}}]', "kid"),
        ('[{"iss": "x", "jwks": {"keys": [{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "k"}]}}]', "not a usable public key"),
    ],
)
def test_mistakes_are_reported(document, message):
    with pytest.raises(ConfigError) as caught:
        load_trusted_clients(document)
    assert message in str(caught.value)


def test_both_jwks_url_and_static_jwks(jwks):
    with pytest.raises(ConfigError, match="not both"):
        parse_trusted_clients([{"iss": ISS, "jwks_url": "https://ehr.example.org/jwks", "jwks": jwks}])


def test_private_key_in_static_jwks_is_refused():
    with pytest.raises(ConfigError, match="PUBLIC keys only"):
        parse_trusted_clients([{"iss": ISS, "jwks": {"keys": [_private_jwk()]}}])


def test_hmac_alg_on_a_static_key_is_refused(jwks):
    key = dict(jwks["keys"][0], alg="HS256")
    with pytest.raises(ConfigError, match="HS256"):
        parse_trusted_clients([{"iss": ISS, "jwks": {"keys": [key]}}])


def test_duplicate_kid_and_duplicate_issuer(jwks):
    with pytest.raises(ConfigError, match="appears twice"):
        parse_trusted_clients([{"iss": ISS, "jwks": {"keys": jwks["keys"] * 2}}])
    with pytest.raises(ConfigError, match="listed twice"):
        parse_trusted_clients([{"iss": ISS, "jwks": jwks}, {"iss": ISS, "jwks": jwks}])


def test_short_rsa_key_in_static_jwks_is_refused():
    weak = generate_rsa_key(kid="weak", bits=1024)
    with pytest.raises(ConfigError, match="1024 bits"):
        parse_trusted_clients([{"iss": ISS, "jwks": make_jwks(weak)}])
