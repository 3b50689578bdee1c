"""Test helpers: real keys, real JWKS, real signed tokens.

Tests of the security layer and of the HTTP layer sign tokens the way a CDS
client would, so they exercise the same verification path as production.
Also builds the forged tokens a verifier must refuse (``alg: none``, HMAC
keyed with the public key), which PyJWT rightly will not produce.

Lives under tests/ so it never ships: it forges tokens (Dockerfile, .dockerignore).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

_CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1,
}


@dataclass(frozen=True)
class SigningKey:
    """A CDS client's key pair; ``alg`` is what it signs with."""

    kid: str
    alg: str
    private_key: Any

    def public_jwk(self, *, include_alg: bool = True) -> dict[str, Any]:
        public = self.private_key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig"})
        if include_alg:
            jwk["alg"] = self.alg
        return jwk

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def generate_ec_key(kid: str = "ec-key-1", alg: str = "ES384") -> SigningKey:
    return SigningKey(kid=kid, alg=alg, private_key=ec.generate_private_key(_CURVES[alg]()))


def generate_rsa_key(kid: str = "rsa-key-1", alg: str = "RS384", bits: int = 2048) -> SigningKey:
    return SigningKey(kid=kid, alg=alg, private_key=rsa.generate_private_key(public_exponent=65537, key_size=bits))


def make_jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [key.public_jwk() for key in keys]}


def client_claims(
    iss: str,
    aud: str | list[str],
    *,
    now: float | None = None,
    lifetime: float = 60,
    **extra: Any,
) -> dict[str, Any]:
    """The payload a CDS client sends (spec 2.0 §trusting-cds-clients), with a
    fresh jti; ``extra`` adds or overrides claims (``None`` removes one)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": iss,
        "aud": aud,
        "iat": issued,
        "exp": int(issued + lifetime),
        "jti": str(uuid.uuid4()),
    }
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def sign_token(
    key: SigningKey,
    claims: dict[str, Any],
    headers: dict[str, Any] | None = None,
    alg: str | None = None,
) -> str:
    """Sign ``claims`` with ``key``; header has typ JWT and the key's kid unless
    ``headers`` overrides them (a value of ``None`` removes a header)."""
    fields: dict[str, Any] = {"typ": "JWT", "kid": key.kid}
    fields.update(headers or {})
    # PyJWT adds typ JWT on its own unless given typ None, which drops it.
    fields = {k: v for k, v in fields.items() if v is not None or k == "typ"}
    return jwt.encode(claims, key.private_key, algorithm=alg or key.alg, headers=fields)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def unsigned_token(claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
    """An ``alg: none`` token (RFC 7519 §6), empty signature."""
    header = {"alg": "none", "typ": "JWT", **(headers or {})}
    return f"{_segment(header)}.{_segment(claims)}."


def hmac_token(
    secret: bytes, claims: dict[str, Any], headers: dict[str, Any] | None = None, alg: str = "HS256"
) -> str:
    """An HMAC-signed token; with ``secret`` = a client's public key PEM this is
    the algorithm-confusion forgery."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    header = {"alg": alg, "typ": "JWT", **(headers or {})}
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = hmac.new(secret, signing_input.encode("ascii"), digest).digest()
    return f"{signing_input}.{_b64(signature)}"


def bearer(token: str) -> str:
    """The Authorization header value for ``token``."""
    return f"Bearer {token}"
