"""Override analytics and silent mode for the CDS committee (issue 14).

- :mod:`.store`: the cards-served log (what we served; no patient data), written off the request path.
- :mod:`.silent`: silent mode, the step that holds back the cards of rules in ``CDS_SILENT_RULES``.
- :mod:`.report`: pure aggregation of served cards and feedback per rule, level, service and week.
- :mod:`.page`: the report as one HTML page with server-rendered SVG charts (no JavaScript).
- :mod:`.views`: ``GET /analytics`` and ``GET /analytics.json`` (only with ``CDS_ANALYTICS_TOKEN``).
- :mod:`.cli`: ``python -m cds_services.analytics``, the same report in a terminal.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from ..rules.common import OVERRIDE_REASONS
from .report import build_report
from .silent import apply_silent_mode, check_silent_rules, split_silent
from .store import ServedLog, read_window, served_rows, served_table

__all__ = [
    "ServedLog", "apply_silent_mode", "check_silent_rules", "load_report", "record_served", "served_table",
    "split_silent",
]

DEFAULT_SINCE_DAYS = 30  # issue 14: the committee's usual month
_REASON_DISPLAY = dict(OVERRIDE_REASONS)


def reason_display(code: str | None) -> str:
    """Our own wording of our override reasons; another client's code is shown as it is."""
    if code is None:
        return "No reason given"
    return _REASON_DISPLAY.get(code, code)


def record_served(
    served_log: ServedLog,
    *,
    now: datetime,
    service_id: str,
    hook: str,
    returned: list[Mapping[str, Any]],
    silent: list[Mapping[str, Any]],
    identity: Any = None,
) -> None:
    """Queue the log rows of one hook call's cards (returned and held back); returns at once."""
    common: dict[str, Any] = {
        "served_at": now, "service_id": service_id, "hook": hook,
        "client_iss": getattr(identity, "iss", None), "client_tenant": getattr(identity, "tenant", None),
    }
    served_log.record(served_rows(returned, silent=False, **common) + served_rows(silent, silent=True, **common))


def load_report(
    engine: Engine, kb: Any, *, now: datetime, since_days: int, silent_rules: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Read the window from the database and aggregate it: the one report behind the page, JSON and CLI."""
    served, feedback = read_window(engine, now - timedelta(days=since_days))
    return build_report(
        served, feedback, now=now, since_days=since_days, rule_display=kb.rule_display,
        reason_display=reason_display, silent_rules=silent_rules,
    )
