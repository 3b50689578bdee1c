"""The CDS clients we trust, loaded once at start and checked strictly.

CDS Hooks 2.0 §trusting-cds-clients: services SHOULD keep an allowlist of
``iss`` and ``jku`` values, and the JWK Set is either fetched from ``jku`` or
agreed out-of-band. This file is that allowlist. A typo here silently weakens
authentication, so unknown fields, missing key sources, non-https key URLs,
private or symmetric keys in a static JWKS all stop the start with a message
naming the issuer and the field.

Format (a JSON list, or an object ``{"issuers": [...]}``)::

    [{"iss": "https://ehr.example.org",
      "jwks_url": "https://ehr.example.org/.well-known/jwks.json",   # or
      "jwks": {"keys": [...public JWKs, each with a kid...]},
      "jku_allowlist": ["https://ehr.example.org/jwks"],             # optional
      "tenants": ["2ddd6c3a-..."],                                   # optional
      "fhir_servers": ["https://ehr.example.org/fhir"]}]             # optional
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import jwt

from cds_services.config import ConfigError as _SettingsConfigError

from .algorithms import ALLOWED_ALGORITHMS
from .fhir_access import FhirServerNotAllowed, parse_base_url

_MIN_RSA_BITS = 2048  # NIST SP 800-131A; PyJWT enforces the same when verifying
_FIELDS = {"iss", "jwks_url", "jwks", "jku_allowlist", "tenants", "fhir_servers"}
# Private-key members of RFC 7518 JWKs: their presence means a private key was
# pasted into our configuration.
_PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


class ConfigError(_SettingsConfigError):
    """The trusted-clients configuration is wrong; the message says where.

    A subclass of the settings' ``ConfigError`` (itself a ``ValueError``) so
    the app factory reports both the same way."""


@dataclass(frozen=True)
class TrustedClient:
    iss: str
    jwks_url: str | None = None
    # Static JWKS agreed out-of-band: kid -> public JWK (read-only).
    jwks: Mapping[str, Mapping[str, Any]] | None = None
    jku_allowlist: tuple[str, ...] = ()
    # Empty: this issuer sends no tenant, or we do not restrict it.
    tenants: tuple[str, ...] = ()
    # FHIR base URLs this issuer's requests may name; empty: the global list.
    fhir_servers: tuple[str, ...] = ()

    @property
    def allowed_jkus(self) -> tuple[str, ...]:
        """The key URLs a token's ``jku`` may name: the allowlist, and the
        issuer's own ``jwks_url``, which is already trusted as a key source
        (an EHR that names it in ``jku`` must not need it registered twice)."""
        if self.jwks_url is None or self.jwks_url in self.jku_allowlist:
            return self.jku_allowlist
        return (*self.jku_allowlist, self.jwks_url)


@dataclass(frozen=True)
class TrustedClients:
    issuers: tuple[TrustedClient, ...]

    def get(self, iss: str) -> TrustedClient | None:
        for client in self.issuers:
            if client.iss == iss:
                return client
        return None


def _https_url(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected an https URL string")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc or parts.fragment:
        raise ConfigError(f"{where}: {value!r} is not an https URL (no userinfo, no fragment)")
    return value


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: expected a list of non-empty strings")
    return tuple(value)


def _static_jwks(value: Any, where: str) -> Mapping[str, Mapping[str, Any]]:
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list) or not value["keys"]:
        raise ConfigError(f"{where}: expected a JWK Set object with a non-empty 'keys' list")
    keys: dict[str, Mapping[str, Any]] = {}
    for index, jwk in enumerate(value["keys"]):
        here = f"{where}.keys[{index}]"
        if not isinstance(jwk, dict):
            raise ConfigError(f"{here}: expected a JWK object")
        private = sorted(_PRIVATE_MEMBERS & set(jwk))
        if private:
            raise ConfigError(
                f"{here}: holds private or symmetric key material ({', '.join(private)}); "
                "configure the client's PUBLIC keys only"
            )
        if jwk.get("kty") not in ("RSA", "EC"):
            raise ConfigError(f"{here}: kty {jwk.get('kty')!r} is not RSA or EC")
        if "alg" in jwk and jwk["alg"] not in ALLOWED_ALGORITHMS:
            raise ConfigError(f"{here}: alg {jwk['alg']!r} is not one we accept ({', '.join(ALLOWED_ALGORITHMS)})")
        if jwk.get("use", "sig") != "sig":
            raise ConfigError(f"{here}: use {jwk.get('use')!r} is not 'sig'")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ConfigError(f"{here}: every key needs a kid (CDS Hooks JWTs name their key)")
        if kid in keys:
            raise ConfigError(f"{here}: kid {kid!r} appears twice")
        try:
            parsed = jwt.PyJWK(jwk)
        except jwt.PyJWTError as error:
            raise ConfigError(f"{here}: not a usable public key ({type(error).__name__})") from None
        key_size = getattr(parsed.key, "key_size", None)
        if jwk["kty"] == "RSA" and key_size is not None and key_size < _MIN_RSA_BITS:
            raise ConfigError(f"{here}: RSA key of {key_size} bits; at least {_MIN_RSA_BITS} required")
        keys[kid] = MappingProxyType(dict(jwk))
    return MappingProxyType(keys)


def _client(entry: Any, index: int) -> TrustedClient:
    where = f"trusted clients[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected an object")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}")
    iss = entry.get("iss")
    if not isinstance(iss, str) or not iss.strip():
        raise ConfigError(f"{where}: 'iss' is required (a non-empty string)")
    where = f"trusted client {iss!r}"
    if "jwks_url" in entry and "jwks" in entry:
        raise ConfigError(f"{where}: give 'jwks_url' or a static 'jwks', not both")
    jwks_url = _https_url(entry["jwks_url"], f"{where}.jwks_url") if "jwks_url" in entry else None
    jwks = _static_jwks(entry["jwks"], f"{where}.jwks") if "jwks" in entry else None
    jku_allowlist = tuple(
        _https_url(url, f"{where}.jku_allowlist")
        for url in _string_list(entry.get("jku_allowlist", []), f"{where}.jku_allowlist")
    )
    if jwks_url is None and jwks is None and not jku_allowlist:
        raise ConfigError(f"{where}: no key source; give 'jwks_url', 'jwks' or 'jku_allowlist'")
    tenants = _string_list(entry.get("tenants", []), f"{where}.tenants")
    fhir_servers = []
    for url in _string_list(entry.get("fhir_servers", []), f"{where}.fhir_servers"):
        try:
            fhir_servers.append(parse_base_url(url).url())
        except FhirServerNotAllowed as error:
            raise ConfigError(f"{where}.fhir_servers: {url!r}: {error.reason}") from None
    return TrustedClient(
        iss=iss,
        jwks_url=jwks_url,
        jwks=jwks,
        jku_allowlist=jku_allowlist,
        tenants=tenants,
        fhir_servers=tuple(fhir_servers),
    )


def parse_trusted_clients(document: Any) -> TrustedClients:
    """Validate an already-decoded configuration document."""
    entries = document.get("issuers") if isinstance(document, dict) else document
    if isinstance(document, dict):
        unknown = sorted(set(document) - {"issuers", "version"})
        if unknown:
            raise ConfigError(f"trusted clients: unknown top-level field(s) {', '.join(unknown)}")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("trusted clients: expected a non-empty list of issuers")
    clients = tuple(_client(entry, index) for index, entry in enumerate(entries))
    seen: set[str] = set()
    for client in clients:
        if client.iss in seen:
            raise ConfigError(f"trusted clients: issuer {client.iss!r} is listed twice")
        seen.add(client.iss)
    return TrustedClients(issuers=clients)


def load_trusted_clients(source: str) -> TrustedClients:
    """Load from JSON text (the value of ``CDS_TRUSTED_CLIENTS``) when it starts
    with ``[`` or ``{``, otherwise from the file at that path."""
    text = source.strip()
    origin = "CDS_TRUSTED_CLIENTS"
    if not text.startswith(("[", "{")):
        if not os.path.isfile(text):
            raise ConfigError(f"trusted clients: {text[:200]!r} is neither JSON nor an existing file")
        origin = text
        with open(text, encoding="utf-8") as handle:
            text = handle.read()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"trusted clients ({origin}): invalid JSON at line {error.lineno} column {error.colno}") from None
    return parse_trusted_clients(document)
