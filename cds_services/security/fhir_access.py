"""Which FHIR servers we may call: ``fhirServer`` is attacker-controlled input.

A hook request names the FHIR server we should query and hands us a bearer
token for it. Without a check, any caller could point us at an internal
address (cloud metadata at 169.254.169.254, an admin port) and make us send
requests there, or make us leak the client's FHIR token to another host.
So the base URL must match an allowlist entry on scheme, host, port and a
path prefix that ends on a segment boundary, and redirects are never
followed at all (cds_services.fhir_client reads with allow_redirects=False).

Pure functions over strings: no DNS, no I/O. Hostnames on the allowlist are
trusted as configured; IP literals in the request are checked here.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import ReasonError

_DEFAULT_PORTS = {"https": 443, "http": 80}

# Percent-encoded '.', '/', '\' would let a path escape its prefix once the
# server decodes it ("/fhir/%2e%2e/admin").
_ENCODED_TRICKS = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


class FhirServerNotAllowed(ReasonError, ValueError):
    """The fhirServer URL is not one we may call; ``reason`` is for the log."""


@dataclass(frozen=True)
class BaseUrl:
    """A FHIR base URL split into the parts the allowlist compares."""

    scheme: str
    host: str  # lower case, no trailing dot, IPv6 without brackets
    port: int  # explicit or the scheme's default
    path: str  # no trailing slash; "" for the root
    explicit_port: bool

    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.explicit_port else ""
        return f"{self.scheme}://{host}{port}{self.path}"

    def allows(self, other: BaseUrl) -> bool:
        """Same origin, and ``other``'s path is this path or below it."""
        if (self.scheme, self.host, self.port) != (other.scheme, other.host, other.port):
            return False
        return other.path == self.path or other.path.startswith(self.path + "/")


def parse_base_url(url: str) -> BaseUrl:
    """Split and normalise an http(s) base URL, rejecting forms that hide where
    a request would really go. Raises ``FhirServerNotAllowed``."""
    if not isinstance(url, str) or not url:
        raise FhirServerNotAllowed("fhirServer is not a non-empty string")
    if _CONTROL_OR_SPACE.search(url) or "\\" in url:
        raise FhirServerNotAllowed("fhirServer contains whitespace, control characters or backslashes")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise FhirServerNotAllowed(f"fhirServer scheme {scheme!r} is not http(s)")
    if "@" in parts.netloc:
        raise FhirServerNotAllowed("fhirServer carries userinfo (user@host)")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise FhirServerNotAllowed("fhirServer has a query or fragment")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise FhirServerNotAllowed("fhirServer has no host")
    try:
        port = parts.port
    except ValueError:
        raise FhirServerNotAllowed("fhirServer has an invalid port") from None
    path = parts.path
    if _ENCODED_TRICKS.search(path):
        raise FhirServerNotAllowed("fhirServer path has percent-encoded dots or slashes")
    segments = path.split("/")
    if any(s in (".", "..") for s in segments) or "//" in path:
        raise FhirServerNotAllowed("fhirServer path has dot segments or empty segments")
    return BaseUrl(
        scheme=scheme,
        host=host,
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        path=path.rstrip("/"),
        explicit_port=port is not None,
    )


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address if ``host`` is an IP literal; rejects legacy IPv4 spellings
    ("2852039166", "0xa9.0xfe.0xa9.0xfe") that resolvers accept but that look
    like hostnames to a naive check."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None:
        try:
            socket.inet_aton(host)
        except OSError:
            return None
        raise FhirServerNotAllowed("fhirServer host is a non-canonical IPv4 literal")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_link_local(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # 169.254.0.0/16 and fe80::/10: cloud metadata (169.254.169.254) and
    # other on-link services; unspecified (0.0.0.0) and multicast are never a FHIR server.
    return address.is_link_local or address.is_unspecified or address.is_multicast


def check_fhir_server(url: str, allowed: Sequence[str], allow_http: bool) -> str:
    """Return the normalised base URL (no trailing slash) if ``url`` may be
    called, else raise ``FhirServerNotAllowed``.

    ``allowed`` holds configured base URLs; ``https://ehr.example/fhir`` allows
    ``https://ehr.example/fhir/`` and ``https://ehr.example/fhir/r4`` but not
    ``https://ehr.example/fhirx`` or ``https://ehr.example.evil.com/fhir``.
    A link-local IP literal is refused unless an entry names that exact host.
    """
    candidate = parse_base_url(url)
    if candidate.scheme == "http" and not allow_http:
        raise FhirServerNotAllowed("fhirServer uses http and http is not allowed")
    entries = [parse_base_url(entry) for entry in allowed]
    address = _ip_literal(candidate.host)
    if (address is not None and _is_link_local(address)
            and not any(entry.host == candidate.host for entry in entries)):
        raise FhirServerNotAllowed("fhirServer is a link-local/metadata address")
    for entry in entries:
        if entry.allows(candidate):
            return candidate.url()
    raise FhirServerNotAllowed("fhirServer is not on the allowlist")

