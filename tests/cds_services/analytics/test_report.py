"""The aggregation on plain rows: outcomes, weeks and the window (the HTTP tests cover the counts end to end)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cds_services.analytics.report import build_report, latest_outcomes, week_start

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # a Wednesday


def served(uuid: str, at: datetime, code: str = "platelets-low", silent: bool = False) -> dict:
    return {"served_at": at, "service_id": "ixabepilone-order-sign", "hook": "order-sign", "rule_code": code,
            "indicator": "critical", "card_uuid": uuid, "suggestion_uuids": ["s-" + uuid], "silent": silent}


def feedback(uuid: str, outcome: str, at: str, id_: int) -> dict:
    item = {"id": id_, "card_uuid": uuid, "outcome": outcome, "outcome_timestamp": at,
            "accepted_suggestions": None, "override_reason": None}
    if outcome == "accepted":
        item["accepted_suggestions"] = [{"id": "s-" + uuid}]
    return item


def report(rows, items=(), since_days=30):
    return build_report(rows, items, now=NOW, since_days=since_days, rule_display=str.upper,
                        reason_display=lambda c: c or "none")


def test_the_latest_outcome_is_by_time_across_zones_not_by_arrival():
    items = [
        feedback("a", "accepted", "2026-11-25T10:05:00-05:00", 1),  # 15:05 UTC: the later one
        feedback("a", "overridden", "2026-11-25T15:01:00Z", 2),
    ]
    assert latest_outcomes(items)["a"].outcome == "accepted"


def test_same_time_falls_back_to_arrival_order():
    items = [feedback("a", "overridden", "2026-11-25T15:01:00Z", 2), feedback("a", "accepted", "2026-11-25T15:01:00Z", 1)]
    assert latest_outcomes(items)["a"].outcome == "overridden"


def test_feedback_on_a_silent_card_is_not_a_clinicians_answer():
    document = report([served("a", NOW, silent=True)], [feedback("a", "overridden", "2026-11-25T15:01:00Z", 1)])
    (rule,) = document["rules"]
    assert (rule["silent"], rule["fired"], rule["overridden"]) == (1, 0, 0)


@pytest.mark.parametrize("moment, monday", [
    (datetime(2026, 11, 22, 23, 59, 59, tzinfo=UTC), "2026-11-16"),  # Sunday night, UTC
    (datetime(2026, 11, 23, 0, 0, tzinfo=UTC), "2026-11-23"),  # Monday midnight
    (datetime(2026, 11, 23, 1, 0, tzinfo=timezone(timedelta(hours=5))), "2026-11-16"),  # still Sunday in UTC
    (datetime(2026, 11, 23, 0, 30), "2026-11-23"),  # noqa: DTZ001 (naive, as SQLite returns it: UTC)
])
def test_weeks_start_on_monday_in_utc(moment, monday):
    assert week_start(moment).isoformat() == monday


def test_the_window_starts_exactly_since_days_back():
    rows = [served("in", NOW - timedelta(days=30)), served("out", NOW - timedelta(days=30, seconds=1))]
    (rule,) = report(rows)["rules"]
    assert rule["fired"] == 1


def test_rules_are_ordered_by_cards_fired_then_silent_then_code():
    rows = [served("1", NOW, "b"), served("2", NOW, "b"), served("3", NOW, "a"), served("4", NOW, "c", silent=True),
            served("5", NOW, "d")]
    assert [r["code"] for r in report(rows)["rules"]] == ["b", "a", "d", "c"]
    assert report(rows)["rules"][0]["display"] == "B"
