"""ClientVerifier on real signed tokens: what a trusted client sends passes,
every forgery and misuse the spec names is refused, and no token leaks."""
from __future__ import annotations

import base64
import logging
from typing import Any

import pytest
import responses
from jwt.warnings import InsecureKeyLengthWarning
from sqlalchemy import create_engine

from cds_services.security.clients import parse_trusted_clients
from cds_services.security.jwks import JwksCache
from cds_services.security.replay import MemoryReplayStore, SqlReplayStore
from cds_services.security.tokens import AuthError, ClientVerifier
from tests.signing import (
    bearer,
    client_claims,
    generate_ec_key,
    generate_rsa_key,
    hmac_token,
    make_jwks,
    sign_token,
    unsigned_token,
)

from .conftest import AUDIENCE, FETCH_ISS, JKU_URL, JWKS_URL, NOW, STATIC_ISS, TENANT


def claims(**extra: Any) -> dict[str, Any]:
    extra.setdefault("iss", STATIC_ISS)
    extra.setdefault("aud", AUDIENCE)
    return client_claims(now=NOW, **extra)


def rejected(verifier: ClientVerifier, header: str | None, audience: str = AUDIENCE) -> str:
    with pytest.raises(AuthError) as caught:
        verifier.verify(header, audience)
    return caught.value.reason


# --- tokens that must pass -------------------------------------------------


def test_valid_es384_token_gives_the_client_identity(verifier, ec_key):
    payload = claims(sub="client_id", tenant="any-tenant")
    identity = verifier.verify(bearer(sign_token(ec_key, payload)), AUDIENCE)
    assert identity.iss == STATIC_ISS
    assert identity.jti == payload["jti"]
    assert identity.sub == "client_id"
    assert identity.tenant == "any-tenant"  # issuer configures no tenants: passed through
    assert identity.kid == "ec-384"
    assert identity.exp == payload["exp"]


def test_valid_rs384_token(verifier, rsa_key):
    identity = verifier.verify(bearer(sign_token(rsa_key, claims())), AUDIENCE)
    assert identity.kid == "rsa-384"


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: generate_ec_key(kid="k", alg="ES256"),
        lambda: generate_ec_key(kid="k", alg="ES512"),
        lambda: generate_rsa_key(kid="k", alg="PS384"),
        lambda: generate_rsa_key(kid="k", alg="RS512"),
    ],
    ids=["ES256", "ES512", "PS384", "RS512"],
)
def test_other_allowed_algorithms(http_session, make_key):
    key = make_key()
    trusted = parse_trusted_clients([{"iss": STATIC_ISS, "jwks": make_jwks(key)}])
    verifier = ClientVerifier(trusted, JwksCache(trusted, http_session), MemoryReplayStore(lambda: NOW), clock=lambda: NOW)
    assert verifier.verify(bearer(sign_token(key, claims())), AUDIENCE).kid == "k"


@pytest.mark.parametrize("typ", [None, "at+jwt", "JWS", 1])
def test_typ_must_be_jwt(verifier, ec_key, typ):
    """CDS Hooks 2.0 lists typ as REQUIRED with the fixed value JWT: absent or other types are refused."""
    token = sign_token(ec_key, claims(), headers={"typ": typ})
    with pytest.raises(AuthError, match="typ"):
        verifier.verify(bearer(token), AUDIENCE)


def test_typ_jwt_is_case_insensitive(verifier, ec_key):
    token = sign_token(ec_key, claims(), headers={"typ": "jwt"})
    assert verifier.verify(bearer(token), AUDIENCE).iss == STATIC_ISS


def test_bearer_scheme_is_case_insensitive(verifier, ec_key):
    token = sign_token(ec_key, claims())
    assert verifier.verify(f"bearer {token}", AUDIENCE).iss == STATIC_ISS


# --- time ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exp_offset", "accepted"),
    [(-31, False), (-30, False), (-29, True), (60, True)],  # leeway 30 s
)
def test_expiry_with_leeway(verifier, ec_key, exp_offset, accepted):
    payload = claims(iat=int(NOW) - 60, exp=int(NOW) + exp_offset)
    header = bearer(sign_token(ec_key, payload))
    if accepted:
        verifier.verify(header, AUDIENCE)
    else:
        assert "expired" in rejected(verifier, header)


def default_verifier(clients, http_session, clock) -> ClientVerifier:
    """A verifier with the defaults a deployment gets (lifetime, leeway)."""
    return ClientVerifier(clients, JwksCache(clients, http_session, clock=clock), MemoryReplayStore(clock), clock=clock)


@pytest.mark.parametrize(
    ("configured", "lifetime", "accepted"),
    [
        (300, 329, True), (300, 330, True), (300, 331, False), (300, 3600, False),  # max 300 s + leeway 30 s
        (None, 3629, True), (None, 3630, True), (None, 3631, False),  # default: one hour + leeway 30 s
    ],
)
def test_lifetime_between_iat_and_exp_is_capped(
    verifier, clients, http_session, clock, ec_key, configured, lifetime, accepted
):
    checker = verifier if configured == 300 else default_verifier(clients, http_session, clock)
    exp = int(NOW) + 10
    header = bearer(sign_token(ec_key, claims(iat=exp - lifetime, exp=exp)))
    if accepted:
        checker.verify(header, AUDIENCE)
    else:
        assert "lifetime" in rejected(checker, header)


def test_iat_long_ago_is_refused_even_when_exp_is_in_the_future(verifier, ec_key):
    header = bearer(sign_token(ec_key, claims(iat=int(NOW) - 400, exp=int(NOW) + 60)))
    assert "lifetime" in rejected(verifier, header)


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), float("-inf"), 1795000000.5, "1795000000", True, 10**400, -1],
    ids=["NaN", "Infinity", "-Infinity", "fraction", "string", "true", "huge", "negative"],
)
def test_time_claims_must_be_whole_finite_seconds(verifier, ec_key, claim, value):
    """exp NaN never expired and iat NaN passed the lifetime cap (NaN compares false with every bound)."""
    payload = claims(iat=int(NOW) - 10, exp=int(NOW) + 60, nbf=int(NOW) - 10)
    payload[claim] = value
    assert claim in rejected(verifier, bearer(sign_token(ec_key, payload)))


def test_whole_seconds_written_as_a_float_are_accepted(verifier, ec_key):
    payload = claims(iat=float(int(NOW)), exp=float(int(NOW) + 60))
    assert verifier.verify(bearer(sign_token(ec_key, payload)), AUDIENCE).exp == int(NOW) + 60


@pytest.mark.parametrize(("nbf_offset", "accepted"), [(-300, True), (30, True), (31, False)])
def test_nbf_in_the_past_is_normal_in_the_future_is_refused(verifier, ec_key, nbf_offset, accepted):
    header = bearer(sign_token(ec_key, claims(nbf=int(NOW) + nbf_offset)))
    if accepted:
        verifier.verify(header, AUDIENCE)
    else:
        assert "nbf" in rejected(verifier, header)


def epic_claims(issued: int) -> dict[str, Any]:
    """Epic's CDS Hooks tutorial: exp 15 minutes after iat (its example: iat 1708123973,
    exp 1708124873), nbf "typically set to 5 minutes prior to the issue time"."""
    return claims(iat=issued, nbf=issued - 300, exp=issued + 900)


def test_default_verifier_accepts_epic_style_tokens(clients, http_session, clock, ec_key):
    """The default lifetime (one hour, best-practices page) admits Epic's 15-minute tokens."""
    verifier = default_verifier(clients, http_session, clock)
    header = bearer(sign_token(ec_key, epic_claims(int(NOW) - 5)))
    assert verifier.verify(header, AUDIENCE).iss == STATIC_ISS
    clock.advance(880)  # 14 min 35 s later the token still lives, and its jti is still held
    assert "already used" in rejected(verifier, header)


@pytest.mark.parametrize(("iat_offset", "accepted"), [(29, True), (30, True), (31, False)])
def test_iat_in_the_future_beyond_leeway(verifier, ec_key, iat_offset, accepted):
    iat = int(NOW) + iat_offset
    header = bearer(sign_token(ec_key, claims(iat=iat, exp=iat + 60)))
    if accepted:
        verifier.verify(header, AUDIENCE)
    else:
        assert "future" in rejected(verifier, header)


@pytest.mark.parametrize("missing", ["exp", "iat", "jti"])
def test_required_claims(verifier, ec_key, missing):
    header = bearer(sign_token(ec_key, claims(**{missing: None})))
    assert missing in rejected(verifier, header)


def test_exp_as_string_is_refused(verifier, ec_key):
    header = bearer(sign_token(ec_key, claims(exp=str(int(NOW) + 60))))
    assert "exp" in rejected(verifier, header)


# --- audience and issuer ---------------------------------------------------


@pytest.mark.parametrize(
    "aud",
    [
        "https://cds.example.org/cds-services",  # discovery's token reused on a service
        "https://cds.example.org/cds-services/other-service",
        AUDIENCE + "/",
        AUDIENCE.upper(),
        [],
        ["https://cds.example.org/cds-services"],
    ],
)
def test_wrong_audience_is_refused(verifier, ec_key, aud):
    header = bearer(sign_token(ec_key, claims(aud=aud)))
    assert "aud" in rejected(verifier, header)


def test_audience_as_list_containing_the_called_url(verifier, ec_key):
    payload = claims(aud=["https://cds.example.org/cds-services", AUDIENCE])
    assert verifier.verify(bearer(sign_token(ec_key, payload)), AUDIENCE).iss == STATIC_ISS


def test_missing_audience_is_refused(verifier, ec_key):
    assert "aud" in rejected(verifier, bearer(sign_token(ec_key, claims(aud=None))))


def test_unknown_issuer_is_refused(verifier, ec_key):
    header = bearer(sign_token(ec_key, claims(iss="https://evil.example.com")))
    assert "not a trusted client" in rejected(verifier, header)


def test_token_signed_by_an_untrusted_key_with_a_trusted_kid(verifier):
    impostor = generate_ec_key(kid="ec-384", alg="ES384")
    header = bearer(sign_token(impostor, claims()))
    assert "signature" in rejected(verifier, header)


# --- algorithms ------------------------------------------------------------


def test_alg_none_is_refused(verifier):
    header = bearer(unsigned_token(claims(), {"kid": "ec-384"}) + "c2ln")  # any signature text
    assert "alg" in rejected(verifier, header)


def test_alg_none_with_empty_signature_is_refused(verifier):
    # The compact form "h.p." must not even reach the alg check.
    assert rejected(verifier, bearer(unsigned_token(claims(), {"kid": "ec-384"})))


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_signed_with_the_public_key_pem_is_refused(verifier, rsa_key, ec_key, alg):
    for key in (rsa_key, ec_key):
        forged = hmac_token(key.public_pem(), claims(), {"kid": key.kid}, alg=alg)
        assert "alg" in rejected(verifier, bearer(forged))


def test_alg_must_match_the_key_type(verifier, ec_key):
    # An RSA signature presented under the EC key's kid.
    other_rsa = generate_rsa_key(kid="ec-384", alg="RS384")
    reason = rejected(verifier, bearer(sign_token(other_rsa, claims())))
    assert "RSA key" in reason or "does not match" in reason


def test_alg_must_match_the_curve(verifier):
    p256 = generate_ec_key(kid="ec-384", alg="ES256")  # kid of our P-384 key
    reason = rejected(verifier, bearer(sign_token(p256, claims())))
    assert "ES256" in reason


def test_kid_is_required(verifier, ec_key):
    header = bearer(sign_token(ec_key, claims(), headers={"kid": None}))
    assert "kid" in rejected(verifier, header)


def test_unknown_kid_on_a_static_issuer(verifier, ec_key):
    header = bearer(sign_token(ec_key, claims(), headers={"kid": "nope"}))
    assert "kid" in rejected(verifier, header)


def test_typ_other_than_jwt_is_refused(verifier, ec_key):
    header = bearer(sign_token(ec_key, claims(), headers={"typ": "at+jwt"}))
    assert "typ" in rejected(verifier, header)


def test_crit_header_is_refused(verifier, ec_key):
    header = bearer(sign_token(ec_key, claims(), headers={"crit": ["exp"]}))
    assert "crit" in rejected(verifier, header)


# --- jku -------------------------------------------------------------------


def fetch_claims(**extra: Any) -> dict[str, Any]:
    extra.setdefault("tenant", TENANT)
    return claims(iss=FETCH_ISS, **extra)


@responses.activate
@pytest.mark.parametrize("jku", [JKU_URL, JWKS_URL], ids=["on-the-allowlist", "the-issuers-jwks-url"])
def test_an_allowed_jku_is_fetched_and_honoured(verifier, fetched_key, jku):
    """The issuer's own jwks_url is already a trusted key source: an EHR naming it in jku
    must not need it listed again in jku_allowlist."""
    responses.get(jku, json=make_jwks(fetched_key))
    token = sign_token(fetched_key, fetch_claims(), headers={"jku": jku})
    assert verifier.verify(bearer(token), AUDIENCE).iss == FETCH_ISS
    assert [call.request.url for call in responses.calls] == [jku]


@responses.activate
def test_jku_off_the_allowlist_is_refused_without_fetching(verifier, fetched_key):
    evil = "https://evil.example.com/jwks.json"
    responses.get(evil, json=make_jwks(fetched_key))
    token = sign_token(fetched_key, fetch_claims(), headers={"jku": evil})
    assert "jku" in rejected(verifier, bearer(token))
    assert len(responses.calls) == 0


@responses.activate
def test_jku_of_another_trusted_issuer_is_refused(verifier):
    # The static issuer has no jku allowlist: a kid it does not hold cannot be
    # fetched from FETCH_ISS's key URL.
    stranger = generate_ec_key(kid="not-configured", alg="ES384")
    responses.get(JKU_URL, json=make_jwks(stranger))
    token = sign_token(stranger, claims(), headers={"jku": JKU_URL})
    assert "jku" in rejected(verifier, bearer(token))
    assert len(responses.calls) == 0


@responses.activate
def test_static_keys_verify_a_token_that_names_a_jku_without_fetching(verifier, ec_key):
    """The CDS Hooks sandbox always sends jku; a site that configured its public
    key inline must not need network access to the jku (nor to list it)."""
    sandbox_like = {"jku": "https://sandbox.cds-hooks.org/.well-known/jwks.json"}
    token = sign_token(ec_key, claims(), headers=sandbox_like)
    assert verifier.verify(bearer(token), AUDIENCE).kid == "ec-384"
    assert len(responses.calls) == 0


@responses.activate
def test_without_jku_the_configured_jwks_url_is_used(verifier, fetched_key):
    responses.get(JWKS_URL, json=make_jwks(fetched_key))
    token = sign_token(fetched_key, fetch_claims())
    assert verifier.verify(bearer(token), AUDIENCE).tenant == TENANT
    assert len(responses.calls) == 1


# --- tenant ----------------------------------------------------------------


@responses.activate
@pytest.mark.parametrize("tenant", ["another-tenant", None, 42])
def test_tenant_not_on_the_issuers_list_is_refused(verifier, fetched_key, tenant):
    responses.get(JWKS_URL, json=make_jwks(fetched_key))
    token = sign_token(fetched_key, fetch_claims(tenant=tenant))
    assert "tenant" in rejected(verifier, bearer(token))


# --- replay ----------------------------------------------------------------


def test_replayed_jti_is_refused(verifier, ec_key):
    header = bearer(sign_token(ec_key, claims()))
    verifier.verify(header, AUDIENCE)
    assert "already used" in rejected(verifier, header)


def test_same_jti_in_a_fresh_token_is_still_a_replay(verifier, ec_key):
    payload = claims()
    verifier.verify(bearer(sign_token(ec_key, payload)), AUDIENCE)
    again = dict(payload, iat=payload["iat"] + 1)
    assert "already used" in rejected(verifier, bearer(sign_token(ec_key, again)))


def test_a_refused_token_does_not_burn_its_jti(verifier, ec_key):
    payload = claims()
    rejected(verifier, bearer(sign_token(ec_key, dict(payload, aud="https://other"))))
    verifier.verify(bearer(sign_token(ec_key, payload)), AUDIENCE)


def test_replay_across_workers_sharing_a_sql_store(make_verifier, ec_key, tmp_path, clock):
    engine = create_engine(f"sqlite:///{tmp_path / 'replay.db'}")
    try:
        worker_a = make_verifier(replay_store=SqlReplayStore(engine, clock=clock))
        worker_b = make_verifier(replay_store=SqlReplayStore(engine, clock=clock))
        header = bearer(sign_token(ec_key, claims()))
        worker_a.verify(header, AUDIENCE)
        assert "already used" in rejected(worker_b, header)
    finally:
        engine.dispose()


# --- the Authorization header itself ----------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token abc.def.ghi",
        "Bearer not-a-jwt",
        "Bearer a.b",
        "Bearer a.b.c.d",
        "Bearer !!!.???.***",
        "Bearer e30.e30.c2ln",  # {} header: no alg
        "Bearer bm90IGpzb24.bm90IGpzb24.c2ln",  # "not json"
        "Bearer W10.W10.c2ln",  # [] header
        "Bearer " + "a" * 20000 + ".b.c",
        "Bearer eyJhbGciOlsiUlMyNTYiXX0.e30.c2ln",  # {"alg": ["RS256"]}: unhashable alg
        "Bearer " + base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode().rstrip("=") + ".e30.c2ln",
    ],
    ids=lambda header: repr(header)[:40],
)
def test_missing_or_garbled_authorization_header(verifier, header):
    assert rejected(verifier, header)


def test_token_without_scheme_is_refused(verifier, ec_key):
    assert "Bearer" in rejected(verifier, sign_token(ec_key, claims()))


# --- no token in reasons or logs ------------------------------------------------


def test_token_never_appears_in_errors_or_logs(verifier, ec_key, rsa_key, caplog):
    caplog.set_level(logging.DEBUG)
    tokens = [
        sign_token(ec_key, claims(aud="https://other.example.org")),
        sign_token(ec_key, claims(iss="https://evil.example.com")),
        sign_token(ec_key, claims(exp=int(NOW) - 600, iat=int(NOW) - 660)),
        sign_token(ec_key, claims(), headers={"kid": "unknown"}),
        sign_token(generate_ec_key(kid="ec-384"), claims()),
        hmac_token(rsa_key.public_pem(), claims(), {"kid": rsa_key.kid}),
        unsigned_token(claims(), {"kid": "ec-384"}),
    ]
    replayed = sign_token(ec_key, claims())
    verifier.verify(bearer(replayed), AUDIENCE)
    tokens.append(replayed)
    for token in tokens:
        with pytest.raises(AuthError) as caught:
            verifier.verify(bearer(token), AUDIENCE)
        signature = token.rsplit(".", 1)[1]
        for text in (str(caught.value), caught.value.reason, repr(caught.value)):
            assert token not in text
            assert not signature or signature not in text
    logged = caplog.text + "".join(str(r.msg) for r in caplog.records)
    assert len([r for r in caplog.records if r.name == "cds.security"]) == len(tokens)
    for token in tokens:
        assert token not in logged
        assert token.split(".")[1] not in logged  # not even the payload


@responses.activate
def test_short_rsa_keys_from_a_fetched_jwks_are_refused(verifier):
    weak = generate_rsa_key(kid="weak", alg="RS384", bits=1024)
    responses.get(JWKS_URL, json=make_jwks(weak))
    with pytest.warns(InsecureKeyLengthWarning):  # PyJWT warns the signer too
        token = sign_token(weak, fetch_claims())
    assert "signature" in rejected(verifier, bearer(token))
