"""fhirServer allowlist: only configured bases (and paths below them) pass;
look-alike hosts, path tricks, userinfo and metadata addresses do not."""
from __future__ import annotations

import pytest

from cds_services.security.fhir_access import FhirServerNotAllowed, check_fhir_server

ALLOWED = ["https://ehr.example/fhir", "https://other.example:8443/r4"]


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://ehr.example/fhir", "https://ehr.example/fhir"),
        ("https://ehr.example/fhir/", "https://ehr.example/fhir"),
        ("https://ehr.example/fhir/r4", "https://ehr.example/fhir/r4"),
        ("https://EHR.Example/fhir", "https://ehr.example/fhir"),
        ("HTTPS://ehr.example/fhir", "https://ehr.example/fhir"),
        ("https://ehr.example:443/fhir", "https://ehr.example:443/fhir"),
        ("https://ehr.example./fhir", "https://ehr.example/fhir"),
        ("https://other.example:8443/r4/tenant-1", "https://other.example:8443/r4/tenant-1"),
    ],
)
def test_allowed(url, normalised):
    assert check_fhir_server(url, ALLOWED, allow_http=False) == normalised


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://ehr.example/fhirx", "allowlist"),
        ("https://ehr.example/fhi", "allowlist"),
        ("https://ehr.example/", "allowlist"),
        ("https://ehr.example.evil.com/fhir", "allowlist"),
        ("https://evil-ehr.example/fhir", "allowlist"),
        ("https://ehr.example:8443/fhir", "allowlist"),
        ("https://other.example/r4", "allowlist"),  # port 443, not 8443
        ("http://ehr.example/fhir", "http"),
        ("ftp://ehr.example/fhir", "scheme"),
        ("//ehr.example/fhir", "scheme"),
        ("ehr.example/fhir", "scheme"),
        ("https://user:pass@ehr.example/fhir", "userinfo"),
        ("https://ehr.example@evil.com/fhir", "userinfo"),
        ("https://ehr.example/fhir/../admin", "dot segments"),
        ("https://ehr.example/fhir/%2e%2e/admin", "percent-encoded"),
        ("https://ehr.example/fhir%2F..%2Fadmin", "percent-encoded"),
        ("https://ehr.example/fhir//r4", "empty segments"),
        ("https://ehr.example/fhir?_format=json", "query"),
        ("https://ehr.example/fhir#x", "fragment"),
        ("https://ehr.example/fhir\\..\\admin", "backslash"),
        ("https://ehr.example/fhir\n", "control"),
        ("https://ehr.example:99999/fhir", "port"),
        ("https:///fhir", "no host"),
        ("", "non-empty"),
    ],
)
def test_refused(url, reason):
    with pytest.raises(FhirServerNotAllowed) as caught:
        check_fhir_server(url, ALLOWED, allow_http=False)
    assert reason in caught.value.reason


def test_http_only_when_allowed():
    allowed = ["http://localhost:8080/fhir"]
    with pytest.raises(FhirServerNotAllowed, match="http"):
        check_fhir_server("http://localhost:8080/fhir", allowed, allow_http=False)
    assert check_fhir_server("http://localhost:8080/fhir", allowed, allow_http=True) == "http://localhost:8080/fhir"
    # allow_http does not make an https entry match http
    with pytest.raises(FhirServerNotAllowed, match="allowlist"):
        check_fhir_server("http://ehr.example/fhir", ALLOWED, allow_http=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data",
        "https://169.254.0.1/fhir",
        "https://[fe80::1]/fhir",
        "https://[::ffff:169.254.169.254]/fhir",
        "https://0.0.0.0/fhir",
    ],
)
def test_link_local_and_metadata_addresses_are_refused(url):
    # Even with a catch-all-looking allowlist entry on another host.
    with pytest.raises(FhirServerNotAllowed, match="link-local"):
        check_fhir_server(url, [*ALLOWED, "https://169.254.1.1/fhir"], allow_http=True)


@pytest.mark.parametrize("host", ["2852039166", "0xa9fea9fe", "0251.0376.0251.0376", "169.254.43518"])
def test_non_canonical_ipv4_literals_are_refused(host):
    with pytest.raises(FhirServerNotAllowed, match="non-canonical"):
        check_fhir_server(f"https://{host}/fhir", ALLOWED, allow_http=False)


def test_link_local_address_passes_only_when_named_in_the_allowlist():
    allowed = ["https://169.254.10.10/fhir"]
    assert check_fhir_server("https://169.254.10.10/fhir/r4", allowed, allow_http=False) == "https://169.254.10.10/fhir/r4"


def test_ip_literals_match_like_hosts():
    allowed = ["https://10.0.0.5/fhir", "https://[2001:db8::1]:8443/fhir"]
    assert check_fhir_server("https://10.0.0.5/fhir", allowed, allow_http=False) == "https://10.0.0.5/fhir"
    assert check_fhir_server("https://[2001:db8::1]:8443/fhir/", allowed, allow_http=False) == "https://[2001:db8::1]:8443/fhir"
    with pytest.raises(FhirServerNotAllowed):
        check_fhir_server("https://10.0.0.6/fhir", allowed, allow_http=False)


def test_root_entry_allows_every_path_on_that_origin():
    assert check_fhir_server("https://ehr.example/any/path", ["https://ehr.example/"], allow_http=False)


def test_empty_allowlist_allows_nothing():
    with pytest.raises(FhirServerNotAllowed, match="allowlist"):
        check_fhir_server("https://ehr.example/fhir", [], allow_http=False)
