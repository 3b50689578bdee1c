"""Structured logs: one JSON object per line on stdout.

Log collectors (and the audit trail on the ``cds.audit`` logger) parse lines,
not prose. Messages never carry tokens; exceptions are logged with their type
and traceback for us, never sent to callers.
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        if isinstance(record.msg, dict):
            payload.update(record.msg)
        else:
            payload["message"] = record.getMessage()
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


_HANDLER_NAME = "cds-json-stdout"


def configure_logging(level: str) -> None:
    """Install the JSON handler on the root logger once per process."""
    root = logging.getLogger()
    root.setLevel(level)
    if any(getattr(h, "name", None) == _HANDLER_NAME for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.name = _HANDLER_NAME
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
