"""Configuration, read from the environment in one place and checked at start.

Every setting has a ``CDS_`` environment variable. ``load_settings`` turns the
environment (plus test overrides) into a frozen :class:`Settings`; a value
that does not parse or makes no sense raises :class:`ConfigError` naming the
variable, so a misconfigured deployment stops at start instead of answering
wrongly at 3 a.m.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    # Feedback store (and shared replay store, where configured): any SQLAlchemy URL.
    # None means "a SQLite file in the app's instance folder".
    database_url: str | None = None
    # Origins allowed to call from a browser (the CDS Hooks sandbox); "*" allows any
    # origin but then credentials are never allowed.
    cors_origins: tuple[str, ...] = ("https://sandbox.cds-hooks.org",)
    cors_allow_credentials: bool = False
    # The URL clients call us at, as they see it (behind a proxy); JWT "aud" is
    # checked against it. Required when authentication is on: taken from the
    # request instead, it would follow the caller's Host header.
    public_base_url: str | None = None
    fhir_connect_timeout: float = 3.05
    fhir_read_timeout: float = 5.0
    # Ten prefetch keys per call and several gunicorn threads per process share
    # one pool: fewer workers than keys would serialise the fallback queries.
    fhir_max_workers: int = 40
    fhir_max_response_bytes: int = 10 * 1024 * 1024
    # All FHIR reads of one hook call (every key, page and Medication) end by this many
    # seconds; what is not read by then is reported on check-unavailable. Well under the
    # few seconds an EHR waits for a hook.
    fhir_deadline: float = 4.0
    # Hook calls per process that may wait on FHIR servers at once (the bulkhead); keep it
    # below the gunicorn threads per worker so /healthz and prefetched calls always find one.
    fhir_max_waiting_calls: int = 6
    max_body_bytes: int = 1024 * 1024
    max_json_depth: int = 64
    knowledge_path: str | None = None
    log_level: str = "INFO"
    # Trust (spec 2.0 §trusting-cds-clients). Authentication is on unless this
    # flag is set explicitly; the service then logs a loud warning at start.
    allow_unauthenticated: bool = False
    # Trusted CDS clients: a JSON document, or a path to one (see README "Security").
    trusted_clients: str | None = None
    # Seconds between iat and exp that we accept. One hour: the CDS Hooks
    # best-practices page says clients' JWTs should live "no more than an hour"
    # (https://cds-hooks.org/best-practices/, CDS Services, JWT); Epic's live 15
    # minutes, which the former 300 s refused.
    jwt_max_lifetime: int = 3600
    jwt_leeway: int = 30  # clock skew tolerated, seconds
    # JWT jti replay store. "database" (default): shared by every worker through
    # CDS_DATABASE_URL (the default SQLite file works across the processes of
    # one host; PostgreSQL across replicas). "memory": one process only; with
    # several gunicorn workers a replay sent to another worker would pass.
    replay_store: str = "database"
    # FHIR servers we may call (fhirServer is attacker-controlled input):
    # base URLs; issuers may narrow this further in the trusted-clients file.
    fhir_servers: tuple[str, ...] = ()
    allow_http_fhir: bool = False  # local development only
    # Override analytics for the CDS committee (GET /analytics, /analytics.json):
    # off (404) unless a token is set; callers then send "Authorization: Bearer <token>".
    analytics_token: str | None = None
    # Cards-served records older than this are purged (issue 14: default 400 days,
    # a year of monthly committee reports plus a month's margin).
    analytics_retention_days: int = 400
    # Rule codes computed and logged but left out of the response ("silent mode",
    # for go-live and noisy rules); ("*",) silences every rule.
    silent_rules: tuple[str, ...] = ()


# CDS_SILENT_RULES value that silences every rule.
SILENT_ALL = "*"
# A bearer token shorter than this is guessable; 16 characters of a random
# URL-safe token carry about 96 bits.
ANALYTICS_TOKEN_MIN_LENGTH = 16
# Retention beyond a century keeps nothing more in practice, and a cut-off before
# year 1 cannot be computed: with 999999 ("keep forever") every purge failed and
# the cards-served writer stopped, so no card was logged again.
ANALYTICS_RETENTION_MAX_DAYS = 36_525
_RULE_CODE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces: it travels in a header


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}={raw!r}: expected true or false")


def _parse_positive(name: str, raw: str, kind: type) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a positive {kind.__name__}") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r}: must be greater than 0")
    return value


def _parse_origins(name: str, raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin == "*":
            continue
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ConfigError(
                f"{name}: {origin!r} is not an origin (scheme://host[:port], no path)"
            )
    return origins


def _is_http_base(url: str) -> bool:
    """An http(s) URL with a host and no query or fragment: something a path can be appended to."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.query and not parts.fragment


def _parse_base_url(name: str, raw: str) -> str:
    if not _is_http_base(raw.strip()):
        raise ConfigError(f"{name}={raw!r}: expected an http(s) URL without query or fragment")
    return raw.strip().rstrip("/")


def _parse_urls(name: str, raw: str) -> tuple[str, ...]:
    urls = tuple(u.strip().rstrip("/") for u in raw.split(",") if u.strip())
    for url in urls:
        if not _is_http_base(url):
            raise ConfigError(f"{name}: {url!r} is not an http(s) base URL")
    return urls


def _parse_rule_codes(name: str, raw: str) -> tuple[str, ...]:
    codes = tuple(dict.fromkeys(c.strip() for c in raw.split(",") if c.strip()))
    if SILENT_ALL in codes and len(codes) > 1:
        raise ConfigError(f"{name}={raw!r}: '*' silences every rule; give either '*' or a list of rule codes")
    bad = [c for c in codes if c != SILENT_ALL and not _RULE_CODE.match(c)]
    if bad:
        raise ConfigError(
            f"{name}: {', '.join(map(repr, bad))} is not a rule code (lower-case letters, digits and '-', "
            "as in the cards' source.topic.code, e.g. platelets-low)"
        )
    return codes


def _optional(_name: str, raw: str) -> str | None:
    return raw.strip() or None


def _upper(_name: str, raw: str) -> str:
    return raw.strip().upper()


def _lower(_name: str, raw: str) -> str:
    return raw.strip().lower()


# Environment variable -> (Settings field, parser)
_ENV: dict[str, tuple[str, Any]] = {
    "CDS_DATABASE_URL": ("database_url", _optional),
    "CDS_CORS_ORIGINS": ("cors_origins", _parse_origins),
    "CDS_CORS_ALLOW_CREDENTIALS": ("cors_allow_credentials", _parse_bool),
    "CDS_PUBLIC_BASE_URL": ("public_base_url", _parse_base_url),
    "CDS_FHIR_CONNECT_TIMEOUT": ("fhir_connect_timeout", lambda n, v: _parse_positive(n, v, float)),
    "CDS_FHIR_READ_TIMEOUT": ("fhir_read_timeout", lambda n, v: _parse_positive(n, v, float)),
    "CDS_FHIR_MAX_WORKERS": ("fhir_max_workers", lambda n, v: _parse_positive(n, v, int)),
    "CDS_FHIR_MAX_RESPONSE_BYTES": (
        "fhir_max_response_bytes",
        lambda n, v: _parse_positive(n, v, int),
    ),
    "CDS_FHIR_DEADLINE": ("fhir_deadline", lambda n, v: _parse_positive(n, v, float)),
    "CDS_FHIR_MAX_WAITING_CALLS": ("fhir_max_waiting_calls", lambda n, v: _parse_positive(n, v, int)),
    "CDS_MAX_BODY_BYTES": ("max_body_bytes", lambda n, v: _parse_positive(n, v, int)),
    "CDS_MAX_JSON_DEPTH": ("max_json_depth", lambda n, v: _parse_positive(n, v, int)),
    "CDS_KNOWLEDGE_PATH": ("knowledge_path", _optional),
    "CDS_LOG_LEVEL": ("log_level", _upper),
    "CDS_ALLOW_UNAUTHENTICATED": ("allow_unauthenticated", _parse_bool),
    "CDS_TRUSTED_CLIENTS": ("trusted_clients", _optional),
    "CDS_JWT_MAX_LIFETIME": ("jwt_max_lifetime", lambda n, v: _parse_positive(n, v, int)),
    "CDS_JWT_LEEWAY": ("jwt_leeway", lambda n, v: _parse_positive(n, v, int)),
    "CDS_REPLAY_STORE": ("replay_store", _lower),
    "CDS_FHIR_SERVERS": ("fhir_servers", _parse_urls),
    "CDS_ALLOW_HTTP_FHIR": ("allow_http_fhir", _parse_bool),
    "CDS_ANALYTICS_TOKEN": ("analytics_token", _optional),
    "CDS_ANALYTICS_RETENTION_DAYS": ("analytics_retention_days", lambda n, v: _parse_positive(n, v, int)),
    "CDS_SILENT_RULES": ("silent_rules", _parse_rule_codes),
}

ENV_VARIABLES = tuple(_ENV)


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Defaults, then the ``CDS_`` environment, then ``overrides`` (tests)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, (field_name, parse) in _ENV.items():
        if name in environ:
            values[field_name] = parse(name, environ[name])
    unknown = sorted(k for k in environ if k.startswith("CDS_") and k not in _ENV)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_ENV))}"
        )
    settings = replace(Settings(), **values)
    if overrides:
        known = {f.name for f in fields(Settings)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ConfigError(f"unknown setting override(s): {', '.join(bad)}")
        settings = replace(settings, **overrides)
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    if "*" in settings.cors_origins and settings.cors_allow_credentials:
        raise ConfigError(
            "CDS_CORS_ORIGINS=* cannot be combined with CDS_CORS_ALLOW_CREDENTIALS=true: "
            "list the origins that may send credentials"
        )
    if settings.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"CDS_LOG_LEVEL={settings.log_level!r}: expected DEBUG, INFO, WARNING or ERROR")
    if settings.replay_store not in ("memory", "database"):
        raise ConfigError(f"CDS_REPLAY_STORE={settings.replay_store!r}: expected memory or database")
    if not settings.allow_unauthenticated and not settings.trusted_clients:
        raise ConfigError(
            "no trusted CDS clients: set CDS_TRUSTED_CLIENTS (see README, Security), "
            "or CDS_ALLOW_UNAUTHENTICATED=true for local development only"
        )
    if not settings.allow_unauthenticated and not settings.public_base_url:
        raise ConfigError(
            "CDS_PUBLIC_BASE_URL is not set: with authentication on, each token's aud is compared with "
            "the URL the EHR calls, and without this setting that URL would come from the request's own "
            "Host header. Set it to the scheme, host and path prefix the EHR uses, e.g. "
            "CDS_PUBLIC_BASE_URL=https://cds.hospital.example (docs/security.md)"
        )
    if settings.knowledge_path and not os.path.isfile(settings.knowledge_path):
        raise ConfigError(f"CDS_KNOWLEDGE_PATH={settings.knowledge_path!r}: no such file")
    token = settings.analytics_token
    if token is not None and (len(token) < ANALYTICS_TOKEN_MIN_LENGTH or not _TOKEN_CHARS.match(token)):
        # The value itself is never echoed: it is a secret.
        raise ConfigError(
            f"CDS_ANALYTICS_TOKEN: expected at least {ANALYTICS_TOKEN_MIN_LENGTH} printable ASCII characters "
            "without spaces (e.g. the output of: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if settings.analytics_retention_days <= 0:
        raise ConfigError(
            f"CDS_ANALYTICS_RETENTION_DAYS={settings.analytics_retention_days!r}: must be greater than 0"
        )
    if settings.analytics_retention_days > ANALYTICS_RETENTION_MAX_DAYS:
        raise ConfigError(
            f"CDS_ANALYTICS_RETENTION_DAYS={settings.analytics_retention_days!r}: at most "
            f"{ANALYTICS_RETENTION_MAX_DAYS} days (100 years)"
        )
