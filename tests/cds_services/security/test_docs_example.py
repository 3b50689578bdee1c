"""docs/security.md is read by a hospital's security review: its examples and
its audit contract must be the code's, not a description that drifted.

Each example sits in a fenced block right after an HTML marker comment
(``<!-- example: trusted-clients -->``...), so the tests find it without
guessing which block is meant.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from cds_services.config import ENV_VARIABLES
from cds_services.logs import JsonFormatter
from cds_services.runtime import EXTENSION
from cds_services.security.algorithms import ALLOWED_ALGORITHMS
from cds_services.security.audit import AUDIT_LOGGER, FIELDS, audit_record
from cds_services.security.clients import TrustedClient
from tests.signing import bearer, client_claims, generate_ec_key, make_jwks, sign_token

DOC_PATH = Path(__file__).resolve().parents[3] / "docs" / "security.md"
DOC = DOC_PATH.read_text(encoding="utf-8")

PUBLIC_BASE = "https://cds.hospital.example"
SERVICE_PATH = "/cds-services/ixabepilone-order-sign"
ISS = "https://ehr.hospital.example/cds-client"
TENANT = "2ddd6c3a-8e9a-44c6-a305-52111ad302a2"

# The type words the audit table uses, and what each allows in the JSON line.
_DOC_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "array of string": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
}
# Added to every JSON log line by logs.JsonFormatter, not by the audit record.
_FORMAT_FIELDS = {"level", "logger"}


def block_after(marker: str) -> str:
    """The fenced block that follows ``<!-- marker -->``."""
    match = re.search(rf"<!-- {re.escape(marker)} -->\n```[a-z]*\n(.*?)```", DOC, flags=re.DOTALL)
    assert match, f"docs/security.md has no fenced block right after <!-- {marker} -->"
    return match.group(1)


def audit_table() -> dict[str, str]:
    """field -> documented type, from the table after the audit-fields marker."""
    start = DOC.index("<!-- contract: audit-fields -->")
    table = DOC[start:].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([a-z ]+) \|", table, flags=re.MULTILINE)
    assert rows, "the audit table has no rows"
    return dict(rows)


def trusted_clients_of(app: Flask) -> Any:
    return app.extensions[EXTENSION].clients


# --- the trusted-clients examples go through the real configuration path ------------------


@pytest.mark.parametrize("form", ["json", "file"])
def test_trusted_clients_example_is_accepted_by_the_service(make_app, tmp_path, form):
    """CDS_TRUSTED_CLIENTS, as the environment gives it, through create_app -> load_settings ->
    load_trusted_clients: a service started with the documented example must start."""
    text = block_after("example: trusted-clients")
    value = text
    if form == "file":
        path = tmp_path / "trusted-clients.json"
        path.write_text(text, encoding="utf-8")
        value = str(path)
    app = make_app({"allow_unauthenticated": False}, environ={"CDS_TRUSTED_CLIENTS": value})

    document = json.loads(text)
    clients = trusted_clients_of(app)
    assert [c.iss for c in clients.issuers] == [entry["iss"] for entry in document["issuers"]]
    fetched, static = clients.issuers
    # What the prose says about the two issuers.
    assert fetched.jwks_url and fetched.jku_allowlist and fetched.tenants == (TENANT,)
    assert fetched.fhir_servers == ("https://ehr.hospital.example/fhir/R4",)
    assert static.jwks is not None and list(static.jwks) == ["onc-2026-01"] and static.fhir_servers == ()


def test_trusted_clients_example_shows_every_field_the_loader_knows():
    """A "complete example": a new per-issuer field in the loader must appear in the doc."""
    document = json.loads(block_after("example: trusted-clients"))
    shown = {name for entry in document["issuers"] for name in entry}
    assert shown == {f.name for f in fields(TrustedClient)}


def test_rotation_example_holds_old_and_new_key_for_one_issuer(make_app):
    app = make_app(
        {"allow_unauthenticated": False},
        environ={"CDS_TRUSTED_CLIENTS": block_after("example: trusted-clients-rotation")},
    )
    (client,) = trusted_clients_of(app).issuers
    assert list(client.jwks) == ["onc-2026-01", "onc-2026-07"]
    # The rotation example is the main example's static issuer with one key added.
    main = json.loads(block_after("example: trusted-clients"))["issuers"][1]
    assert client.iss == main["iss"]
    assert dict(client.jwks["onc-2026-01"]) == main["jwks"]["keys"][0]


# --- the audit table is the audit line ------------------------------------------------------


@pytest.fixture(scope="module")
def ehr_key():
    return generate_ec_key("ehr-2026-01", "ES384")


@pytest.fixture
def real_audit_line(make_app, ehr_key, sample_request, caplog) -> dict[str, Any]:
    """One authenticated order-sign call, as a trusted EHR behind our public URL makes it;
    the audit line exactly as the JSON log handler writes it."""
    trusted = json.dumps([{"iss": ISS, "jwks": make_jwks(ehr_key), "tenants": [TENANT]}])
    app = make_app({"allow_unauthenticated": False, "trusted_clients": trusted, "public_base_url": PUBLIC_BASE})
    token = sign_token(ehr_key, client_claims(ISS, PUBLIC_BASE + SERVICE_PATH, tenant=TENANT))
    with caplog.at_level(logging.INFO, logger=AUDIT_LOGGER):
        response = app.test_client().post(
            SERVICE_PATH, json=sample_request, headers={"Authorization": bearer(token)}
        )
    assert response.status_code == 200
    (record,) = [r for r in caplog.records if r.name == AUDIT_LOGGER]
    line = JsonFormatter().format(record)
    assert token not in line
    return json.loads(line)


def test_documented_audit_fields_are_the_fields_of_a_real_line(real_audit_line):
    documented = audit_table()
    written = set(real_audit_line) - _FORMAT_FIELDS
    # Every field appears on a successful authenticated hook call, except the safety net.
    assert set(documented) - {"dropped"} == written
    assert set(documented) == set(FIELDS)
    # ...which is real: an unexpected field passed to the audit builder is named there.
    assert audit_record(event="hook", surprise="x")["dropped"] == ["surprise"]


def test_documented_audit_types_match_a_real_line(real_audit_line):
    documented = audit_table()
    assert set(documented.values()) <= set(_DOC_TYPES), "unknown type word in the audit table"
    for name, value in real_audit_line.items():
        if name in _FORMAT_FIELDS:
            continue
        assert _DOC_TYPES[documented[name]](value), f"{name}={value!r} is not a {documented[name]}"
    assert real_audit_line["logger"] == AUDIT_LOGGER
    assert real_audit_line["iss"] == ISS and real_audit_line["tenant"] == TENANT
    assert real_audit_line["rule_codes"] == ["platelets-low"] and real_audit_line["outcome"] == "ok"


def test_audit_example_line_has_the_shape_of_a_real_line(real_audit_line):
    example = json.loads(block_after("example: audit-line"))
    assert list(example) == list(real_audit_line)  # same fields, same order
    documented = audit_table()
    for name, value in example.items():
        if name not in _FORMAT_FIELDS:
            assert _DOC_TYPES[documented[name]](value), name


# --- other statements a reviewer relies on -----------------------------------------------


def test_unauthenticated_start_logs_the_documented_warning(make_app, caplog):
    with caplog.at_level(logging.WARNING, logger="cds.security"):
        make_app({"allow_unauthenticated": True})
    warnings = [r.getMessage() for r in caplog.records if r.name == "cds.security"]
    assert warnings == [block_after("example: unauthenticated-warning").strip()]


def test_documented_algorithms_are_exactly_the_accepted_ones():
    named = set(re.findall(r"`((?:RS|PS|ES|HS)\d{3})`", DOC.split("### Authentication is on by default")[0]))
    assert named == set(ALLOWED_ALGORITHMS)


def test_every_setting_named_in_the_doc_exists():
    named = set(re.findall(r"\bCDS_[A-Z_]+[A-Z]\b", DOC))
    assert named and named <= set(ENV_VARIABLES), sorted(named - set(ENV_VARIABLES))
