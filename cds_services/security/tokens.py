"""Verify the JWT a CDS client sends with every call (CDS Hooks 2.0
§trusting-cds-clients, §jwt-signing-algorithm).

What each check guards against:

- ``alg`` on an explicit list of asymmetric algorithms, and matching the key
  type: ``none`` (no signature) and HMAC signed with our copy of the client's
  *public* key (the classic algorithm-confusion forgery) are refused, as the
  spec requires (SHALL NOT none, SHALL NOT symmetric).
- ``iss`` on the allowlist, ``jku`` only from that issuer's allowlist: a
  token cannot bring its own keys.
- ``aud`` is exactly the URL called: a token minted for another service (or
  for discovery) cannot be reused here.
- ``exp``/``iat``/``nbf`` are finite whole numbers (CDS Hooks 2.0 calls
  ``exp`` an "integer" of seconds): NaN compares false with every bound, so
  ``exp: NaN`` would never expire. A maximum lifetime measured from ``iat``
  (default one hour, the ceiling the CDS Hooks best-practices page gives):
  a stolen token is useful briefly; ``jti`` recorded until expiry: it is
  useful once.
- ``tenant`` on the issuer's list when the issuer configures tenants.

Every failure raises ``AuthError(reason)``. The reason is for our log only
(the caller gets a bare 401, per the best-practices page) and never contains
the token. Each rejection is logged once on ``cds.security``; callers should
not log it again.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, overload

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from . import ReasonError
from .algorithms import ALLOWED_ALGORITHMS
from .clients import TrustedClients
from .jwks import JkuNotAllowed, JwksCache, JwksError, PublicKey
from .replay import ReplayStore

logger = logging.getLogger("cds.security")

_MAX_TOKEN_CHARS = 16 * 1024
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_MAX_CLAIM_CHARS = 255  # jti, kid, tenant, sub: longer values are not ids


class AuthError(ReasonError):
    """The request is not from a trusted client. ``reason`` is for the log."""


@dataclass(frozen=True)
class ClientIdentity:
    iss: str
    jti: str
    sub: str | None
    tenant: str | None
    kid: str
    exp: float


def _b64_json(segment: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise AuthError(f"token {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise AuthError(f"token {what} is not a JSON object")
    return value


_LOGGED_MAX = 80  # characters of a caller-supplied value in a log line or error


def _short(value: Any) -> str:
    """A caller-supplied value made safe to log: repr, cut short."""
    text = repr(value)
    return text if len(text) <= _LOGGED_MAX else text[: _LOGGED_MAX - 3] + "..."


# NumericDates past this are not dates (year 2^53 s is ~285 million AD); without
# a bound, exp = 10**400 passes every comparison and overflows float() later.
_MAX_NUMERIC_DATE = 2**53


@overload
def _numeric_date(claims: dict[str, Any], name: str, required: Literal[True]) -> int: ...
@overload
def _numeric_date(claims: dict[str, Any], name: str, required: Literal[False]) -> int | None: ...
def _numeric_date(claims: dict[str, Any], name: str, required: bool) -> int | None:
    """A JWT time claim as whole seconds, or ``AuthError``.

    RFC 7519 §2 NumericDate, narrowed by CDS Hooks 2.0, whose payload table
    calls ``exp`` an "integer" of seconds since the epoch: a finite JSON number
    with no fraction (``1.795e9`` is fine, ``1795000000.5`` is not). NaN and
    Infinity (Python's JSON decoder accepts both) are refused: NaN compares
    false with every bound, so ``exp: NaN`` never expired and ``iat: NaN``
    passed the lifetime cap. Strings and booleans are not numbers.
    """
    value = claims.get(name)
    if value is None and not required:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not (math.isfinite(value) and value.is_integer()))
        or not 0 <= value <= _MAX_NUMERIC_DATE
    ):
        raise AuthError(f"{name} is {'missing or ' if required else ''}not a whole number of seconds ({_short(value)})")
    return int(value)


def _short_string(claims: dict[str, Any], name: str, required: bool) -> str | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > _MAX_CLAIM_CHARS:
        raise AuthError(f"claim {name} is {'missing or ' if required else ''}not a short non-empty string")
    return value


def _check_key_matches(alg: str, key: PublicKey) -> None:
    kty, curve = ALLOWED_ALGORITHMS[alg]
    if key.alg is not None and key.alg != alg:
        raise AuthError(f"alg {alg} does not match the key's alg {_short(key.alg)}")
    public = key.key
    if kty == "RSA":
        if not isinstance(public, rsa.RSAPublicKey):
            raise AuthError(f"alg {alg} needs an RSA key")
    elif not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != curve:
        raise AuthError(f"alg {alg} needs an EC {curve} key")


class ClientVerifier:
    """Turns an ``Authorization`` header into a ``ClientIdentity`` or an ``AuthError``."""

    def __init__(
        self,
        clients: TrustedClients,
        jwks_cache: JwksCache,
        replay_store: ReplayStore,
        *,
        max_lifetime_seconds: int = 3600,
        leeway_seconds: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clients = clients
        self._jwks = jwks_cache
        self._replay = replay_store
        self._max_lifetime = max_lifetime_seconds
        self._leeway = leeway_seconds
        self._clock = clock

    def verify(self, authorization_header: str | None, audience: str) -> ClientIdentity:
        """Check the bearer JWT for a call to ``audience`` (the exact URL called)."""
        try:
            return self._verify(authorization_header, audience)
        except AuthError as error:
            logger.warning({"event": "auth.rejected", "reason": error.reason, "aud": audience})
            raise

    def _verify(self, authorization_header: str | None, audience: str) -> ClientIdentity:
        token = self._bearer_token(authorization_header)
        header_segment, payload_segment, _ = token.split(".")
        header = _b64_json(header_segment, "header")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise AuthError(f"alg {_short(alg)} is not an allowed asymmetric algorithm")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.upper() != "JWT":  # CDS Hooks 2.0: typ REQUIRED, fixed "JWT"
            raise AuthError("typ header is missing" if typ is None else f"typ {_short(typ)} is not JWT")
        if "crit" in header:
            raise AuthError("crit header extensions are not supported")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > _MAX_CLAIM_CHARS:
            raise AuthError("kid header is missing or not a short string")
        jku = header.get("jku")
        if jku is not None and not isinstance(jku, str):
            raise AuthError("jku header is not a string")

        unverified = _b64_json(payload_segment, "payload")
        iss = unverified.get("iss")
        client = self._clients.get(iss) if isinstance(iss, str) else None
        if not isinstance(iss, str) or client is None:
            raise AuthError(f"iss {_short(iss)} is not a trusted client")

        # The cache decides which key source a jku may name (the issuer's
        # allowlist and its jwks_url), and uses configured keys before any jku.
        try:
            key = self._jwks.get_key(iss, kid, jku)
        except JkuNotAllowed:
            raise AuthError(f"jku {_short(jku)} is not an allowed key URL of iss {_short(iss)}") from None
        except JwksError as error:
            raise AuthError(f"no key for kid {_short(kid)} of iss {_short(iss)}: {error.reason}") from None
        _check_key_matches(alg, key)
        try:
            payload = jwt.PyJWS().decode(
                token,
                key=key.key,
                algorithms=[alg],
                options={"enforce_minimum_key_length": True},
            )
        except jwt.PyJWTError as error:
            raise AuthError(f"signature check failed for iss {_short(iss)} ({type(error).__name__})") from None
        claims = json.loads(payload)  # same bytes as the payload already parsed
        return self._check_claims(claims, audience, client.tenants, kid)

    @staticmethod
    def _bearer_token(authorization_header: str | None) -> str:
        if not authorization_header:
            raise AuthError("no Authorization header")
        scheme, _, token = authorization_header.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise AuthError("Authorization scheme is not Bearer")
        token = token.strip()
        if len(token) > _MAX_TOKEN_CHARS or not _TOKEN_SHAPE.fullmatch(token):
            raise AuthError("bearer value is not a compact JWS")
        return token

    def _check_claims(
        self, claims: dict[str, Any], audience: str, tenants: tuple[str, ...], kid: str
    ) -> ClientIdentity:
        iss = claims["iss"]
        now = self._clock()
        aud = claims.get("aud")
        if isinstance(aud, str):
            aud_ok = aud == audience
        elif isinstance(aud, list):
            aud_ok = audience in aud and all(isinstance(a, str) for a in aud)
        else:
            aud_ok = False
        if not aud_ok:
            raise AuthError(f"aud {_short(aud)} is not the called URL")
        exp = _numeric_date(claims, "exp", required=True)
        iat = _numeric_date(claims, "iat", required=True)
        nbf = _numeric_date(claims, "nbf", required=False)
        if exp <= now - self._leeway:
            raise AuthError(f"token expired {now - exp:.0f}s ago")
        if iat > now + self._leeway:
            raise AuthError(f"iat is {iat - now:.0f}s in the future")
        # Epic sets nbf 5 minutes before iat: an nbf in the past is normal.
        if nbf is not None and nbf > now + self._leeway:
            raise AuthError(f"nbf is {nbf - now:.0f}s in the future")
        if exp <= iat:
            raise AuthError("exp is not after iat")
        # Lifetime from iat, not nbf: an early nbf must not count against the token.
        if exp - iat > self._max_lifetime + self._leeway:
            raise AuthError(f"token lifetime {exp - iat:.0f}s exceeds {self._max_lifetime}s")
        jti = _short_string(claims, "jti", required=True) or ""
        sub = _short_string(claims, "sub", required=False)
        tenant = _short_string(claims, "tenant", required=bool(tenants))
        if tenants and tenant not in tenants:
            raise AuthError(f"tenant {_short(tenant)} is not allowed for iss {_short(iss)}")
        # Last, so that tokens failing any other check never fill the store.
        if self._replay.seen(jti, iss, float(exp) + self._leeway):
            raise AuthError(f"jti {_short(jti)} of iss {_short(iss)} was already used")
        return ClientIdentity(iss=iss, jti=jti, sub=sub, tenant=tenant, kid=kid, exp=float(exp))
