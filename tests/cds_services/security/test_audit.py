"""Audit lines: the documented fields only, one JSON line on cds.audit, and
never a credential even when a caller passes one by mistake."""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone

import pytest

from cds_services.logs import JsonFormatter
from cds_services.security.audit import AUDIT_LOGGER, FIELDS, REDACTED, audit_record, log_audit
from tests.signing import client_claims, generate_ec_key, sign_token

TOKEN = sign_token(generate_ec_key(), client_claims("https://ehr.example.org", "https://cds.example.org/x"))


def hook_record(**extra):
    fields = {
        "event": "hook",
        "service_id": "ixabepilone-order-sign",
        "hook_instance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "iss": "https://ehr.example.org",
        "tenant": "2ddd6c3a-8e9a-44c6-a305-52111ad302a2",
        "jti": "ee22b021-e1b7-4611-ba5b-8eec6a33ac1e",
        "rule_codes": ["platelets-low", "hepatic-impairment"],
        "indicators": ["critical", "warning"],
        "card_count": 2,
        "latency_ms": 41.237,
        "status": 200,
        "outcome": "ok",
        "patient_id": "example-patient-1",
    }
    fields.update(extra)
    return audit_record(**fields)


def test_hook_record_carries_the_documented_fields():
    record = hook_record(time=datetime(2026, 11, 25, 10, 0, tzinfo=timezone(timedelta(hours=-5))))
    assert record == {
        "time": "2026-11-25T15:00:00.000+00:00",
        "event": "hook",
        "service_id": "ixabepilone-order-sign",
        "hook_instance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "iss": "https://ehr.example.org",
        "tenant": "2ddd6c3a-8e9a-44c6-a305-52111ad302a2",
        "jti": "ee22b021-e1b7-4611-ba5b-8eec6a33ac1e",
        "rule_codes": ["platelets-low", "hepatic-impairment"],
        "indicators": ["critical", "warning"],
        "card_count": 2,
        "latency_ms": 41.2,
        "status": 200,
        "outcome": "ok",
        "patient_id": "example-patient-1",
    }
    assert set(record) <= set(FIELDS)


def test_time_defaults_to_now_in_utc():
    record = audit_record(event="feedback", status=200, outcome="ok")
    when = datetime.fromisoformat(record["time"])
    assert when.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - when).total_seconds()) < 5


@pytest.mark.parametrize(
    "name",
    ["token", "access_token", "fhirAuthorization", "Authorization", "authorization_header", "jwt", "bearer", "client_secret", "id_token"],
)
def test_credential_fields_are_dropped_without_trace(name):
    record = hook_record(**{name: TOKEN})
    assert name not in record
    assert name not in record.get("dropped", [])
    assert TOKEN not in json.dumps(record)


def test_unknown_fields_are_dropped_by_name_only():
    record = hook_record(birthDate="1961-04-02", cards=[{"summary": "x"}])
    assert "birthDate" not in record and "cards" not in record
    assert record["dropped"] == ["birthDate", "cards"]
    assert "1961" not in json.dumps(record)


def test_a_token_in_an_allowed_field_is_redacted():
    record = hook_record(outcome=f"error: {TOKEN}")
    assert record["outcome"] == REDACTED
    record = hook_record(rule_codes=["ok", TOKEN])
    assert record["rule_codes"] == ["ok", REDACTED]


def test_unknown_event_is_a_programming_error():
    with pytest.raises(ValueError, match="login"):
        audit_record(event="login")


def test_log_audit_writes_one_json_line_on_cds_audit(caplog):
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    logger = logging.getLogger(AUDIT_LOGGER)
    hand_made = dict(hook_record(), access_token=TOKEN, note=f"Bearer {TOKEN}")
    log_audit(logger, hand_made)
    records = [r for r in caplog.records if r.name == AUDIT_LOGGER]
    assert len(records) == 1
    line = JsonFormatter().format(records[0])
    assert "\n" not in line
    payload = json.loads(line)
    assert payload["event"] == "hook"
    assert payload["rule_codes"] == ["platelets-low", "hepatic-impairment"]
    assert "access_token" not in payload
    assert payload["note"] == REDACTED
    assert TOKEN not in line and TOKEN not in caplog.text


def test_string_fields_are_cut_so_a_refused_request_cannot_flood_the_log():
    from cds_services.security.audit import audit_record

    record = audit_record(event="hook", hook_instance="x" * 500_000, patient_id="p" * 1000)
    assert len(record["hook_instance"]) == 200 and record["hook_instance"].endswith("\u2026")
    assert len(record["patient_id"]) == 200
