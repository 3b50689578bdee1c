"""The cards-served log's writer: off the request path, in batches, and nothing lost on a clean exit."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from cds_services.analytics.store import ServedLog, served_rows, served_table
from cds_services.config import ANALYTICS_RETENTION_MAX_DAYS

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
CARD = {
    "uuid": "5b0c8c7e-1f55-4a5e-9d3c-0d5f1c7b9e21",
    "summary": "Platelets 80,000/mm3 (2026-11-24): ixabepilone is contraindicated below 100,000/mm3",
    "indicator": "critical",
    "detail": "Latest platelet count 80 10*3/uL = 80,000/mm3 on 2026-11-24 (Observation/plt-1).",
    "source": {"label": "IXEMPRA label, §4 Contraindications",
               "topic": {"system": "urn:ixabepilone-cds:rules", "code": "platelets-low",
                         "display": "Platelet count below 100,000 cells/mm3"}},
    "suggestions": [{"label": "Cancel the ixabepilone order", "uuid": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
}


def rows(n: int, served_at: datetime = NOW) -> list[dict]:
    return [r for i in range(n) for r in served_rows(
        [{**CARD, "uuid": f"card-{i}"}], served_at=served_at, service_id="ixabepilone-order-sign",
        hook="order-sign", silent=False)]


def count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(served_table)).scalar_one()


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/served.sqlite3")
    yield engine
    engine.dispose()


def test_a_row_holds_only_what_the_committee_needs():
    (row,) = served_rows([CARD], served_at=NOW, service_id="ixabepilone-order-sign", hook="order-sign",
                         silent=True, client_iss="https://ehr.example.org", client_tenant="hospital-main")
    assert row == {
        "served_at": NOW, "service_id": "ixabepilone-order-sign", "hook": "order-sign", "rule_code": "platelets-low",
        "indicator": "critical", "card_uuid": CARD["uuid"], "suggestion_uuids": ["e56e1945-20b3-4393-8503-a1a20fd73152"],
        "silent": True, "client_iss": "https://ehr.example.org", "client_tenant": "hospital-main",
    }


def test_a_card_without_uuid_is_not_logged_and_odd_values_are_cut_to_fit():
    assert served_rows([{**CARD, "uuid": None}], served_at=NOW, service_id="s", hook="h", silent=False) == []
    (row,) = served_rows([{**CARD, "source": "not an object"}], served_at=NOW, service_id="s", hook="h",
                         silent=False, client_iss="https://" + "x" * 600)
    assert row["rule_code"] == "unknown" and len(row["client_iss"]) == 500


def test_record_does_not_touch_the_database_and_flush_writes(engine):
    log = ServedLog(engine, clock=lambda: NOW, retention_days=400, flush_interval=60)
    try:
        log.record(rows(3))
        assert count(engine) == 0 and log.pending() == 3
        assert log.flush() is True
        assert count(engine) == 3 and log.pending() == 0
    finally:
        log.close()


def test_a_full_batch_is_written_without_waiting_for_the_interval(engine):
    log = ServedLog(engine, clock=lambda: NOW, retention_days=400, flush_interval=60, batch_size=5)
    try:
        log.record(rows(2))
        log.record(rows(3))
        deadline = time.monotonic() + 10
        while count(engine) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert count(engine) == 5
    finally:
        log.close()


def test_the_writer_thread_writes_after_the_interval_and_then_stops(engine):
    log = ServedLog(engine, clock=lambda: NOW, retention_days=400, flush_interval=0.05)
    try:
        log.record(rows(4))
        deadline = time.monotonic() + 10
        while (count(engine) < 4 or log._thread is not None) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert count(engine) == 4 and log._thread is None  # no idle thread left behind
    finally:
        log.close()


def test_close_writes_what_is_queued(engine):
    log = ServedLog(engine, clock=lambda: NOW, retention_days=400, flush_interval=60)
    log.record(rows(7))
    log.close()
    assert count(engine) == 7
    log.record(rows(1))  # after close (shutdown): written in place
    assert count(engine) == 8


def test_rows_the_database_refused_stay_queued_and_are_written_later(engine, caplog):
    log = ServedLog(engine, clock=lambda: NOW, retention_days=400, flush_interval=60)
    try:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE cards_served RENAME TO cards_served_away"))
        log.record(rows(3))
        assert log.flush() is False and log.pending() == 3
        assert "could not write 3 records" in caplog.text
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE cards_served_away RENAME TO cards_served"))
        assert log.flush() is True and count(engine) == 3
    finally:
        log.close()


def test_memory_stays_bounded_when_the_database_is_gone_for_long(engine, caplog):
    log = ServedLog(engine, clock=lambda: NOW, retention_days=400, flush_interval=60, max_pending=5)
    try:
        log.record(rows(8))
        assert log.pending() == 5 and "3 oldest records dropped" in caplog.text
    finally:
        log.close()


def test_purge_runs_after_a_write_and_not_again_before_its_period(engine):
    clock = {"now": NOW}
    log = ServedLog(engine, clock=lambda: clock["now"], retention_days=400, flush_interval=60,
                    purge_every=timedelta(hours=6))
    try:
        log.record(rows(1, NOW - timedelta(days=401)) + rows(1, NOW - timedelta(days=399)))
        log.flush()
        assert count(engine) == 1  # the 401-day-old record went on the first write
        log.record(rows(1, NOW - timedelta(days=500)))
        clock["now"] = NOW + timedelta(hours=5)
        log.flush()
        assert count(engine) == 2  # within 6 h of the last purge: kept for now
        clock["now"] = NOW + timedelta(hours=6)
        log.flush()  # nothing to write: no purge either
        log.record(rows(1))
        log.flush()
        assert count(engine) == 2  # the 500-day-old one purged, the new one written
    finally:
        log.close()


def test_records_past_the_retention_are_purged_at_start_without_a_write(engine):
    """A worker that serves no card still purges: at start, with the retention it was started with."""
    old = ServedLog(engine, clock=lambda: NOW, retention_days=400, flush_interval=60)
    old.record(rows(1, NOW - timedelta(days=11)) + rows(1, NOW - timedelta(days=9)))
    old.close()
    assert count(engine) == 2
    ServedLog(engine, clock=lambda: NOW, retention_days=10, flush_interval=60).close()
    assert count(engine) == 1


def test_the_longest_retention_the_settings_allow_still_writes_and_purges(engine):
    """A cut-off the clock cannot compute (999999 days: before year 1) made every write fail for good."""
    log = ServedLog(engine, clock=lambda: NOW, retention_days=ANALYTICS_RETENTION_MAX_DAYS, flush_interval=60)
    try:
        log.record(rows(1, NOW - timedelta(days=ANALYTICS_RETENTION_MAX_DAYS + 1)) + rows(1))
        assert log.flush() is True
        assert count(engine) == 1
    finally:
        log.close()


def test_a_clean_interpreter_exit_writes_the_queued_rows(tmp_path):
    """The process ends without close(), as a gunicorn worker does after SIGTERM: nothing is lost."""
    url = f"sqlite:///{tmp_path}/exit.sqlite3"
    script = textwrap.dedent(f"""
        from datetime import datetime, timezone
        from sqlalchemy import create_engine
        from cds_services.analytics.store import ServedLog
        from tests.cds_services.analytics.test_store import rows
        log = ServedLog(create_engine({url!r}), clock=lambda: datetime.now(timezone.utc), retention_days=400,
                        flush_interval=30)
        log.record(rows(25))
        print(log.pending())
    """)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[3])
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "25"  # still queued when the script's last line ran
    assert elapsed < 20  # the exit did not wait out the 30 s interval
    engine = create_engine(url)
    try:
        assert count(engine) == 25
    finally:
        engine.dispose()
