"""The JWS algorithms we accept, and the key each one needs.

CDS Hooks 2.0 §jwt-signing-algorithm: JWTs SHALL NOT use ``none`` nor any
symmetric (HMAC) algorithm; ES384 and RS384 are RECOMMENDED. We accept the
RSA (PKCS#1 v1.5 and PSS) and ECDSA families at the three SHA-2 sizes and
nothing else: an explicit list, so a new algorithm in PyJWT never becomes
acceptable by accident.
"""
from __future__ import annotations

# alg -> (JWK kty, EC curve name as cryptography spells it, or None)
ALLOWED_ALGORITHMS: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "secp256r1"),
    "ES384": ("EC", "secp384r1"),
    "ES512": ("EC", "secp521r1"),
}
