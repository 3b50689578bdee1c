"""Public keys of trusted CDS clients, fetched sparingly and cached.

CDS Hooks 2.0 §trusting-cds-clients: the JWT header ``kid`` names a key in the
client's JWK Set, published at a URL (configured ``jwks_url`` or an
allow-listed ``jku``; the ``jwks_url`` is an allowed ``jku`` too) or agreed
out-of-band (a static JWKS in our config, used first when it holds the
``kid``, even if the token also names a ``jku``).

Clients rotate keys, so an unknown ``kid`` triggers a refetch. But ``kid`` is
attacker-chosen: without a limit, a flood of tokens with random kids would
make us hammer the issuer (and queue our own threads behind it). So fetches
are rate-limited per issuer (at most one per ``min_refresh_interval_seconds``),
and a failed fetch falls back to the last keys we had.

Thread-safe: one lock per issuer serialises fetches; cached hits take no lock.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import jwt
import requests

from . import ReasonError
from .algorithms import ALLOWED_ALGORITHMS
from .clients import TrustedClients

logger = logging.getLogger("cds.security")

_PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


class JwksError(ReasonError):
    """No usable key; ``reason`` is for the log (it never holds a token)."""


class UnknownIssuer(JwksError):
    pass


class JkuNotAllowed(JwksError):
    pass


class KeyNotFound(JwksError):
    pass


class JwksUnavailable(JwksError):
    """The issuer's JWK Set could not be fetched or parsed."""


@dataclass(frozen=True)
class PublicKey:
    """One verification key: the JWK's ``alg`` member (None when the JWK does
    not pin one) and the ``cryptography`` public key object."""

    kid: str
    alg: str | None
    key: Any


@dataclass(frozen=True)
class _Entry:
    keys: Mapping[str, PublicKey]
    fetched_at: float


def _usable_keys(document: Any, source: str) -> dict[str, PublicKey]:
    """Signing keys with a kid from a JWK Set; other entries are skipped so one
    odd key (an encryption key, an unsupported curve) does not break the rest."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksUnavailable(f"JWKS from {source} is not a JWK Set object")
    keys: dict[str, PublicKey] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC"):
            continue
        if jwk.get("use", "sig") != "sig" or _PRIVATE_MEMBERS & set(jwk):
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or kid in keys:
            continue
        alg = jwk.get("alg")
        if alg is not None and alg not in ALLOWED_ALGORITHMS:
            continue
        try:
            parsed = jwt.PyJWK(jwk)
        except jwt.PyJWTError:
            continue
        keys[kid] = PublicKey(kid=kid, alg=alg if isinstance(alg, str) else None, key=parsed.key)
    return keys


class JwksCache:
    """Keys per issuer: static, or fetched from ``jwks_url`` / an allowed ``jku``.

    ``clock`` is monotonic seconds (injectable for tests). ``timeout`` is the
    requests (connect, read) pair; a JWK Set larger than ``max_bytes`` is refused.
    """

    def __init__(
        self,
        clients: TrustedClients,
        session: requests.Session,
        *,
        ttl_seconds: float = 600.0,
        min_refresh_interval_seconds: float = 30.0,
        timeout: tuple[float, float] = (3.05, 5.0),
        max_bytes: int = 256 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clients = clients
        self._session = session
        self._ttl = ttl_seconds
        self._min_interval = min_refresh_interval_seconds
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._clock = clock
        self._static: dict[str, dict[str, PublicKey]] = {
            client.iss: _usable_keys({"keys": [dict(k) for k in client.jwks.values()]}, client.iss)
            for client in clients.issuers
            if client.jwks is not None
        }
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._last_fetch: dict[str, float] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock_for(self, iss: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(iss, threading.Lock())

    def get_key(self, iss: str, kid: str, jku: str | None = None) -> PublicKey:
        """The key ``kid`` of issuer ``iss``; raises a ``JwksError`` subclass."""
        client = self._clients.get(iss)
        if client is None:
            raise UnknownIssuer("issuer is not trusted")
        static = self._static.get(client.iss)
        if static is not None and kid in static:
            # Keys agreed out-of-band win, whatever the jku says: the token
            # names a key we already hold, so nothing is fetched and the jku
            # cannot bring another key. This is what lets a site trust a
            # client that always sends jku (the CDS Hooks sandbox) offline.
            return static[kid]
        if jku is not None:
            if jku not in client.allowed_jkus:
                raise JkuNotAllowed("jku is neither on the issuer's jku allowlist nor its jwks_url")
            url = jku
        elif static is not None:
            raise KeyNotFound("kid is not in the issuer's static JWKS")
        elif client.jwks_url is not None:
            url = client.jwks_url
        else:
            raise KeyNotFound("issuer publishes keys only through jku and the token has none")

        entry = self._entries.get((iss, url))
        if entry is not None and kid in entry.keys and self._clock() - entry.fetched_at < self._ttl:
            return entry.keys[kid]
        with self._lock_for(iss):
            return self._refresh_and_get(iss, url, kid)

    def _refresh_and_get(self, iss: str, url: str, kid: str) -> PublicKey:
        now = self._clock()
        entry = self._entries.get((iss, url))
        if entry is not None and kid in entry.keys and now - entry.fetched_at < self._ttl:
            return entry.keys[kid]  # another thread refreshed while we waited
        last = self._last_fetch.get(iss)
        if last is not None and now - last < self._min_interval:
            if entry is not None and kid in entry.keys:
                return entry.keys[kid]  # stale but the refresh budget is spent
            if entry is None:
                raise JwksUnavailable("JWKS not available yet and refresh is rate-limited")
            raise KeyNotFound("kid unknown and JWKS refresh is rate-limited")
        self._last_fetch[iss] = now
        try:
            keys = self._fetch(url)
        except JwksUnavailable as error:
            if entry is not None and kid in entry.keys:
                logger.warning({"event": "jwks.stale", "iss": iss, "jwks_url": url, "reason": error.reason})
                return entry.keys[kid]
            logger.warning({"event": "jwks.unavailable", "iss": iss, "jwks_url": url, "reason": error.reason})
            raise
        self._entries[(iss, url)] = _Entry(keys=keys, fetched_at=now)
        logger.info({"event": "jwks.fetched", "iss": iss, "jwks_url": url, "kids": sorted(keys)})
        key = keys.get(kid)
        if key is None:
            raise KeyNotFound("kid is not in the issuer's JWKS")
        return key

    def _fetch(self, url: str) -> dict[str, PublicKey]:
        try:
            with self._session.get(
                url,
                headers={"Accept": "application/jwk-set+json, application/json"},
                timeout=self._timeout,
                allow_redirects=False,  # the allowlist names the URL; a redirect would leave it
                stream=True,
            ) as response:
                if response.status_code != HTTPStatus.OK:
                    raise JwksUnavailable(f"JWKS fetch answered HTTP {response.status_code}")
                body = bytearray()
                for chunk in response.iter_content(chunk_size=16384):
                    body.extend(chunk)
                    if len(body) > self._max_bytes:
                        raise JwksUnavailable(f"JWKS larger than {self._max_bytes} bytes")
        except requests.RequestException as error:
            raise JwksUnavailable(f"JWKS fetch failed ({type(error).__name__})") from None
        try:
            document = json.loads(bytes(body))
        except (ValueError, UnicodeDecodeError):
            raise JwksUnavailable("JWKS is not JSON") from None
        return _usable_keys(document, url)
