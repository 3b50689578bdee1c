"""JwksCache against a faked JWKS endpoint: key rotation works, a flood of
unknown kids does not turn into a flood of requests, and a failing issuer
does not lock out tokens signed with keys we already hold."""
from __future__ import annotations

import threading

import pytest
import requests
import responses

from cds_services.security.jwks import (
    JkuNotAllowed,
    JwksCache,
    JwksUnavailable,
    KeyNotFound,
    UnknownIssuer,
)
from cds_services.security.tokens import AuthError
from tests.signing import bearer, client_claims, generate_ec_key, make_jwks, sign_token

from .conftest import AUDIENCE, FETCH_ISS, JKU_URL, JWKS_URL, TENANT

MIN_INTERVAL = 30.0
TTL = 600.0


@pytest.fixture
def cache(clients, http_session, clock) -> JwksCache:
    return JwksCache(
        clients, http_session, ttl_seconds=TTL, min_refresh_interval_seconds=MIN_INTERVAL, clock=clock
    )


@pytest.fixture
def jwks_endpoint():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def jwks_calls(mock: responses.RequestsMock, url: str = JWKS_URL) -> int:
    return sum(1 for call in mock.calls if call.request.url == url)


def test_keys_are_fetched_once_and_cached(cache, jwks_endpoint, fetched_key, clock):
    jwks_endpoint.get(JWKS_URL, json=make_jwks(fetched_key))
    for _ in range(5):
        assert cache.get_key(FETCH_ISS, "fetched-1").kid == "fetched-1"
        clock.advance(60)
    assert jwks_calls(jwks_endpoint) == 1


def test_fetch_uses_timeouts_and_never_follows_redirects(clients, clock, fetched_key):
    seen: dict = {}

    class RecordingSession(requests.Session):
        def get(self, url, **kwargs):  # type: ignore[override]
            seen.update(kwargs)
            return super().get(url, **kwargs)

    with RecordingSession() as session, responses.RequestsMock() as mock:
        mock.get(JWKS_URL, json=make_jwks(fetched_key))
        JwksCache(clients, session, timeout=(1.5, 2.5), clock=clock).get_key(FETCH_ISS, "fetched-1")
    assert seen["timeout"] == (1.5, 2.5)
    assert seen["allow_redirects"] is False


def test_keys_are_refetched_after_the_ttl(cache, jwks_endpoint, fetched_key, clock):
    jwks_endpoint.get(JWKS_URL, json=make_jwks(fetched_key))
    cache.get_key(FETCH_ISS, "fetched-1")
    clock.advance(TTL - 1)
    cache.get_key(FETCH_ISS, "fetched-1")
    assert jwks_calls(jwks_endpoint) == 1
    clock.advance(2)
    cache.get_key(FETCH_ISS, "fetched-1")
    assert jwks_calls(jwks_endpoint) == 2


def test_rotated_key_is_found_by_one_refetch(make_verifier, jwks_endpoint, fetched_key, clock):
    verifier = make_verifier(min_refresh_interval_seconds=MIN_INTERVAL, ttl_seconds=TTL)
    old_jwks = jwks_endpoint.get(JWKS_URL, json=make_jwks(fetched_key))

    def token(key) -> str:
        return bearer(sign_token(key, client_claims(FETCH_ISS, AUDIENCE, now=clock(), tenant=TENANT)))

    verifier.verify(token(fetched_key), AUDIENCE)
    assert jwks_calls(jwks_endpoint) == 1

    # The client rotates: its JWKS now holds only the new key.
    rotated = generate_ec_key(kid="fetched-2", alg="ES384")
    jwks_endpoint.remove(old_jwks)
    jwks_endpoint.get(JWKS_URL, json=make_jwks(rotated))
    clock.advance(MIN_INTERVAL + 1)
    verifier.verify(token(rotated), AUDIENCE)
    assert jwks_calls(jwks_endpoint) == 2

    # Later tokens with the new kid come from the cache.
    verifier.verify(token(rotated), AUDIENCE)
    assert jwks_calls(jwks_endpoint) == 2


def test_a_flood_of_unknown_kids_fetches_at_most_once_per_interval(
    make_verifier, jwks_endpoint, fetched_key, clock
):
    verifier = make_verifier(min_refresh_interval_seconds=MIN_INTERVAL, ttl_seconds=TTL)
    jwks_endpoint.get(JWKS_URL, json=make_jwks(fetched_key))
    verifier.verify(
        bearer(sign_token(fetched_key, client_claims(FETCH_ISS, AUDIENCE, now=clock(), tenant=TENANT))),
        AUDIENCE,
    )
    clock.advance(MIN_INTERVAL + 1)

    for n in range(100):
        forged = sign_token(
            fetched_key,
            client_claims(FETCH_ISS, AUDIENCE, now=clock(), tenant=TENANT),
            headers={"kid": f"random-{n}"},
        )
        with pytest.raises(AuthError):
            verifier.verify(bearer(forged), AUDIENCE)
        clock.advance(0.1)  # 100 tokens over 10 s
    assert jwks_calls(jwks_endpoint) == 2  # the first load + one refresh for the flood

    clock.advance(MIN_INTERVAL)
    with pytest.raises(AuthError):
        verifier.verify(
            bearer(
                sign_token(
                    fetched_key,
                    client_claims(FETCH_ISS, AUDIENCE, now=clock(), tenant=TENANT),
                    headers={"kid": "random-after"},
                )
            ),
            AUDIENCE,
        )
    assert jwks_calls(jwks_endpoint) == 3
    # The known key still works throughout.
    verifier.verify(
        bearer(sign_token(fetched_key, client_claims(FETCH_ISS, AUDIENCE, now=clock(), tenant=TENANT))),
        AUDIENCE,
    )
    assert jwks_calls(jwks_endpoint) == 3


def test_rate_limit_is_per_issuer_and_counts_the_jku(cache, jwks_endpoint, fetched_key, clock):
    jwks_endpoint.get(JWKS_URL, json=make_jwks(fetched_key))
    jwks_endpoint.get(JKU_URL, json=make_jwks(fetched_key))
    cache.get_key(FETCH_ISS, "fetched-1")
    # Same issuer, other URL, within the interval: no second fetch.
    with pytest.raises(JwksUnavailable):
        cache.get_key(FETCH_ISS, "fetched-1", jku=JKU_URL)
    assert jwks_calls(jwks_endpoint, JKU_URL) == 0


def test_concurrent_requests_for_a_new_key_fetch_once(cache, jwks_endpoint, fetched_key):
    jwks_endpoint.get(JWKS_URL, json=make_jwks(fetched_key))
    results: list = []
    start = threading.Barrier(16)

    def ask() -> None:
        start.wait()
        results.append(cache.get_key(FETCH_ISS, "fetched-1").kid)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["fetched-1"] * 16
    assert jwks_calls(jwks_endpoint) == 1


@pytest.mark.parametrize(
    "reply",
    [
        {"status": 500, "json": {"error": "down"}},
        {"status": 404, "body": "not found"},
        {"status": 302, "headers": {"Location": "https://evil.example.com/jwks.json"}},
        {"status": 200, "body": "<html>not json</html>"},
        {"status": 200, "json": {"no": "keys"}},
        {"status": 200, "body": requests.ConnectTimeout("timed out")},
    ],
    ids=["500", "404", "redirect", "html", "no-keys", "timeout"],
)
def test_unusable_jwks_responses(cache, jwks_endpoint, reply):
    jwks_endpoint.get(JWKS_URL, **reply)
    with pytest.raises(JwksUnavailable):
        cache.get_key(FETCH_ISS, "fetched-1")
    assert all(call.request.url == JWKS_URL for call in jwks_endpoint.calls)


def test_oversized_jwks_is_refused(clients, http_session, clock, jwks_endpoint):
    jwks_endpoint.get(JWKS_URL, body=b"{" + b" " * 5000 + b"}")
    cache = JwksCache(clients, http_session, max_bytes=1024, clock=clock)
    with pytest.raises(JwksUnavailable, match="larger"):
        cache.get_key(FETCH_ISS, "fetched-1")


def test_failed_refresh_serves_the_keys_we_had(cache, jwks_endpoint, fetched_key, clock, caplog):
    good = jwks_endpoint.get(JWKS_URL, json=make_jwks(fetched_key))
    cache.get_key(FETCH_ISS, "fetched-1")
    jwks_endpoint.remove(good)
    jwks_endpoint.get(JWKS_URL, status=503)
    clock.advance(TTL + 1)
    assert cache.get_key(FETCH_ISS, "fetched-1").kid == "fetched-1"
    assert jwks_calls(jwks_endpoint) == 2
    assert any("jwks.stale" in str(record.msg) for record in caplog.records)


def test_odd_keys_in_a_fetched_jwks_are_skipped(cache, jwks_endpoint, fetched_key):
    odd = [
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        dict(fetched_key.public_jwk(), kid="enc", use="enc"),
        dict(fetched_key.public_jwk(), kid="hs", alg="HS256"),
        {"kty": "EC", "kid": "broken", "crv": "P-384", "x": "AA", "y": "AA"},
        "not a key",
    ]
    jwks_endpoint.get(JWKS_URL, json={"keys": [*odd, fetched_key.public_jwk()]})
    assert cache.get_key(FETCH_ISS, "fetched-1").kid == "fetched-1"
    for kid in ("hmac", "enc", "hs", "broken"):
        with pytest.raises(KeyNotFound):
            cache.get_key(FETCH_ISS, kid)


def test_unknown_issuer_and_jku_off_the_allowlist(cache, jwks_endpoint):
    with pytest.raises(UnknownIssuer):
        cache.get_key("https://evil.example.com", "k")
    with pytest.raises(JkuNotAllowed):
        cache.get_key(FETCH_ISS, "k", jku="https://evil.example.com/jwks.json")
    assert len(jwks_endpoint.calls) == 0


def test_static_issuer_never_fetches(cache, jwks_endpoint):
    assert cache.get_key("https://ehr-static.example.org", "ec-384").alg == "ES384"
    with pytest.raises(KeyNotFound):
        cache.get_key("https://ehr-static.example.org", "rotated")
    assert len(jwks_endpoint.calls) == 0
