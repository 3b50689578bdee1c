"""Fixtures for the security tests: real keys (made once per session), a
controllable clock, and trusted-client configurations built from them."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from cds_services.security.clients import TrustedClients, parse_trusted_clients
from cds_services.security.jwks import JwksCache
from cds_services.security.replay import MemoryReplayStore
from cds_services.security.tokens import ClientVerifier
from tests.signing import SigningKey, generate_ec_key, generate_rsa_key, make_jwks

NOW = 1_795_000_000.0  # 2026-11-18, a fixed "now" for every token
AUDIENCE = "https://cds.example.org/cds-services/ixabepilone-order-sign"
STATIC_ISS = "https://ehr-static.example.org"
FETCH_ISS = "https://ehr-fetch.example.org"
JWKS_URL = "https://ehr-fetch.example.org/.well-known/jwks.json"
JKU_URL = "https://keys.ehr-fetch.example.org/jwks.json"
TENANT = "2ddd6c3a-8e9a-44c6-a305-52111ad302a2"


class FakeClock:
    """Wall-clock and monotonic stand-in; tests move it with ``advance``."""

    def __init__(self, start: float = NOW) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def ec_key() -> SigningKey:
    return generate_ec_key(kid="ec-384", alg="ES384")


@pytest.fixture(scope="session")
def rsa_key() -> SigningKey:
    return generate_rsa_key(kid="rsa-384", alg="RS384")


@pytest.fixture(scope="session")
def fetched_key() -> SigningKey:
    return generate_ec_key(kid="fetched-1", alg="ES384")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def clients_config(ec_key: SigningKey, rsa_key: SigningKey) -> list[dict[str, Any]]:
    return [
        {"iss": STATIC_ISS, "jwks": make_jwks(ec_key, rsa_key)},
        {
            "iss": FETCH_ISS,
            "jwks_url": JWKS_URL,
            "jku_allowlist": [JKU_URL],
            "tenants": [TENANT],
            "fhir_servers": ["https://ehr-fetch.example.org/fhir"],
        },
    ]


@pytest.fixture
def clients(clients_config: list[dict[str, Any]]) -> TrustedClients:
    return parse_trusted_clients(clients_config)


@pytest.fixture
def http_session() -> Any:
    session = requests.Session()
    yield session
    session.close()


@pytest.fixture
def make_verifier(
    clients: TrustedClients, http_session: requests.Session, clock: FakeClock
) -> Callable[..., ClientVerifier]:
    """A verifier on the test clients; keyword args reach ``JwksCache`` or
    ``ClientVerifier`` (``replay_store=``)."""

    def build(replay_store: Any = None, **cache_options: Any) -> ClientVerifier:
        cache = JwksCache(clients, http_session, clock=clock, **cache_options)
        return ClientVerifier(
            clients,
            cache,
            replay_store if replay_store is not None else MemoryReplayStore(clock=clock),
            max_lifetime_seconds=300,
            leeway_seconds=30,
            clock=clock,
        )

    return build


@pytest.fixture
def verifier(make_verifier: Callable[..., ClientVerifier]) -> ClientVerifier:
    return make_verifier()
