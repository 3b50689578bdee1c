"""The audit trail: one JSON line per hook call and per feedback call.

Audit answers "who asked what, what did we say, how did it end" without
holding more patient data than needed, and never a credential (a logged
token could be replayed by anyone who reads the logs).

Stable contract: the line on logger ``cds.audit`` carries these fields and no
others (absent ones are omitted); collectors and dashboards may rely on them.

=================  ===========  ==============================================
field              type         meaning
=================  ===========  ==============================================
``time``           str          UTC ISO 8601 with milliseconds, when recorded
``event``          str          ``"hook"`` or ``"feedback"``
``service_id``     str          the CDS service id called
``hook_instance``  str          the request's ``hookInstance`` (hook calls)
``iss``            str          the client's JWT issuer (None: unauthenticated)
``tenant``         str          the client's JWT ``tenant`` claim
``jti``            str          the client's JWT id (ties the line to one call)
``rule_codes``     list[str]    codes of the rules whose cards were returned
``indicators``     list[str]    the cards' indicators, in card order
``card_count``     int          cards returned (hook) or feedback items (feedback)
``latency_ms``     float        time spent serving the call
``status``         int          HTTP status returned
``outcome``        str          ``ok`` (status below 400) or ``error``; the status
                                says which error
``patient_id``     str          the FHIR Patient id: the only PHI on the line
``dropped``        list[str]    names of fields passed in but not on this list
=================  ===========  ==============================================

Defensive rules: an unknown field is dropped (its name, never its value, is
listed in ``dropped``); a field whose name looks like a credential (token,
authorization, secret...) is dropped without trace; any string value shaped
like a JWT is replaced by ``"[redacted]"``.
"""
from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

AUDIT_LOGGER = "cds.audit"
EVENTS = ("hook", "feedback")

_STRING_FIELDS = ("service_id", "hook_instance", "iss", "tenant", "jti", "outcome", "patient_id")
_LIST_FIELDS = ("rule_codes", "indicators")
FIELDS = (
    "time",
    "event",
    "service_id",
    "hook_instance",
    "iss",
    "tenant",
    "jti",
    "rule_codes",
    "indicators",
    "card_count",
    "latency_ms",
    "status",
    "outcome",
    "patient_id",
    "dropped",
)
_CREDENTIAL_NAME = re.compile(
    r"token|authori[sz]ation|bearer|secret|password|passwd|credential|jwt|cookie|api_?key", re.IGNORECASE)
_JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
REDACTED = "[redacted]"


_MAX_STRING = 200  # a string field is cut here: values logged from a refused request are unvalidated


def _clean_string(value: Any) -> str:
    text = str(value)
    if _JWT_SHAPE.search(text):
        return REDACTED
    return text if len(text) <= _MAX_STRING else text[: _MAX_STRING - 1] + "\u2026"


def audit_record(**fields: Any) -> dict[str, Any]:
    """Build an audit line from keyword fields (see the module docstring).
    ``event`` is required; ``time`` defaults to now (UTC)."""
    event = fields.pop("event", None)
    if event not in EVENTS:
        raise ValueError(f"audit event must be one of {EVENTS}, not {event!r}")
    when = fields.pop("time", None)
    if when is None:
        when = datetime.now(UTC)
    if isinstance(when, datetime):
        when = when.astimezone(UTC).isoformat(timespec="milliseconds")
    record: dict[str, Any] = {"time": _clean_string(when), "event": event}
    dropped: list[str] = []
    for name, value in fields.items():
        if _CREDENTIAL_NAME.search(name):
            continue
        if name not in FIELDS or name == "dropped":
            dropped.append(name)
            continue
        if value is None:
            continue
        if name in _STRING_FIELDS:
            record[name] = _clean_string(value)
        elif name in _LIST_FIELDS:
            record[name] = [_clean_string(item) for item in value]
        elif name == "latency_ms":
            record[name] = round(float(value), 1)
        else:  # status, card_count
            record[name] = int(value)
    if dropped:
        record["dropped"] = sorted(dropped)
    return record


def _scrub(record: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for name, value in record.items():
        if _CREDENTIAL_NAME.search(name):
            continue
        if isinstance(value, str):
            clean[name] = _clean_string(value)
        elif isinstance(value, list):
            clean[name] = [_clean_string(v) if isinstance(v, str) else v for v in value]
        else:
            clean[name] = value
    return clean


def log_audit(logger: logging.Logger, record: dict[str, Any]) -> None:
    """Emit ``record`` as one INFO line (``logs.JsonFormatter`` merges dict
    messages into the JSON object). Scrubbed again: a caller may have built the
    dict by hand."""
    logger.info(_scrub(record))
