"""The cards-served log: one row per card we computed, written off the request path.

Why a log at all: feedback alone says what clinicians did with the cards they
acted on; without a record of every card served no rate can be computed
(override rate, cards with no response, "would have fired" in silent mode).

What a row holds is deliberately little: when, which service and hook, the
rule code, the indicator, the card's and its suggestions' uuids, whether the
card was held back (silent mode), and the calling client's issuer and tenant.
No patient identifier, no free text (summary, detail, labels), no FHIR data:
the analytics database can be shared with a committee without becoming a
second copy of the record.

Writing must not slow a hook call: the view hands rows to :class:`ServedLog`,
which queues them in memory; a short-lived writer thread inserts them in
batches (one transaction each) after ``flush_interval`` seconds. On a clean
interpreter exit (gunicorn's graceful shutdown of a worker ends in
``sys.exit``) an ``atexit`` hook closes every open log: it wakes the writer,
waits for it, and writes whatever is still queued, so the exit costs one
insert, not a wait for the interval.
"""
from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Boolean, Column, DateTime, Integer, String, Table, delete, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..feedback import create_tables, feedback_table, metadata

log = logging.getLogger(__name__)

served_table = Table(
    "cards_served",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("served_at", DateTime(timezone=True), nullable=False, index=True),
    Column("service_id", String(200), nullable=False),
    Column("hook", String(100), nullable=False),
    Column("rule_code", String(100), nullable=False),
    Column("indicator", String(20), nullable=False),
    Column("card_uuid", String(200), nullable=False, index=True),
    Column("suggestion_uuids", JSON, nullable=False),  # list of the card's suggestion uuids
    Column("silent", Boolean, nullable=False),  # computed but left out of the response (silent mode)
    Column("client_iss", String(500), nullable=True),
    Column("client_tenant", String(200), nullable=True),
)

UNKNOWN = "unknown"
_LENGTHS = {c.name: c.type.length for c in served_table.columns if isinstance(c.type, String)}


def _fit(value: Any, column: str) -> str | None:
    """A string cut to its column's length: one odd value must not make a whole batch fail."""
    if not isinstance(value, str) or not value:
        return None
    return value[: _LENGTHS[column]]


def served_rows(
    cards: Iterable[Mapping[str, Any]],
    *,
    served_at: datetime,
    service_id: str,
    hook: str,
    silent: bool,
    client_iss: str | None = None,
    client_tenant: str | None = None,
) -> list[dict[str, Any]]:
    """The log rows for ``cards`` (pure): only the fields above, never the card's text.

    A card without a uuid cannot receive feedback and is not logged.
    """
    rows = []
    for card in cards:
        card_uuid = _fit(card.get("uuid"), "card_uuid")
        if card_uuid is None:
            continue
        source = source if isinstance(source := card.get("source"), Mapping) else {}
        topic = topic if isinstance(topic := source.get("topic"), Mapping) else {}
        suggestions = suggestions if isinstance(suggestions := card.get("suggestions"), list) else []
        rows.append({
            "served_at": served_at.astimezone(UTC),
            "service_id": _fit(service_id, "service_id") or UNKNOWN,
            "hook": _fit(hook, "hook") or UNKNOWN,
            "rule_code": _fit(topic.get("code"), "rule_code") or UNKNOWN,
            "indicator": _fit(card.get("indicator"), "indicator") or UNKNOWN,
            "card_uuid": card_uuid,
            "suggestion_uuids": [s["uuid"] for s in suggestions
                                 if isinstance(s, Mapping) and isinstance(s.get("uuid"), str)],
            "silent": silent,
            "client_iss": _fit(client_iss, "client_iss"),
            "client_tenant": _fit(client_tenant, "client_tenant"),
        })
    return rows


# Logs still open at interpreter exit get a last flush (see the module docstring).
_open_logs: weakref.WeakSet[ServedLog] = weakref.WeakSet()


@atexit.register
def _flush_open_logs() -> None:
    for served in list(_open_logs):
        served.close()


class ServedLog:
    """Queues served-card rows and writes them in batches on a background thread.

    ``record`` only appends to a list under a lock (microseconds), so the hook
    call does not wait for the database. ``flush`` writes what is queued in
    the caller's thread (the analytics views call it so that a page shows this
    process's latest cards); ``close`` flushes and stops. Rows older than
    ``retention_days`` (by ``clock``) are deleted at start and after a successful
    write, at most once per ``purge_every``.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime],
        retention_days: int,
        flush_interval: float = 1.0,
        batch_size: int = 500,
        max_pending: int = 100_000,
        purge_every: timedelta = timedelta(hours=6),
    ) -> None:
        self.engine = engine
        self._clock = clock
        self._retention = timedelta(days=retention_days)
        self._interval = flush_interval
        self._batch_size = batch_size
        self._max_pending = max_pending
        self._purge_every = purge_every
        self._pending: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()  # one writer at a time: the thread, flush() or close()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._last_purge: datetime | None = None
        create_tables(engine, [served_table])
        # At start too, not only after a write: a service that serves no card (or whose retention was just
        # shortened) must not keep records past the retention until its next card.
        self._purge(clock())
        _open_logs.add(self)

    # ------------------------------------------------------------ writing

    def record(self, rows: list[dict[str, Any]]) -> None:
        """Queue rows for writing; never blocks on the database."""
        if not rows:
            return
        with self._cond:
            self._pending.extend(rows)
            overflow = len(self._pending) - self._max_pending
            if overflow > 0:
                # Only when the database has refused writes for a long time: keep memory bounded, say so.
                del self._pending[:overflow]
                log.error("cards-served log: database unreachable, %d oldest records dropped", overflow)
            if self._closed:
                closed = True
            else:
                closed = False
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="cards-served-writer", daemon=True)
                    self._thread.start()
                elif len(self._pending) >= self._batch_size:
                    self._cond.notify()
        if closed:  # after close (app shut down): write in place rather than lose the rows
            self.flush()

    def _run(self) -> None:
        """Collect for ``flush_interval``, write, and stop once nothing new has arrived."""
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._closed or len(self._pending) >= self._batch_size, timeout=self._interval
                )
            written = self.flush()
            with self._cond:
                if self._closed or not self._pending or not written:
                    # Idle, closing, or the database refused: the next record() (or close) tries again.
                    self._thread = None
                    return

    def flush(self) -> bool:
        """Write every queued row now; False if the database refused them (they stay queued)."""
        with self._write_lock:
            with self._cond:
                batch, self._pending = self._pending, []
            if not batch:
                return True
            try:
                with self.engine.begin() as connection:
                    connection.execute(insert(served_table), batch)
            except SQLAlchemyError:
                log.exception("cards-served log: could not write %d records; will retry", len(batch))
                with self._cond:
                    self._pending[:0] = batch
                return False
            self._purge_if_due()
            return True

    def _purge_if_due(self) -> None:
        now = self._clock()
        if self._last_purge is not None and now - self._last_purge < self._purge_every:
            return
        self._last_purge = now if self._purge(now) else None

    def _purge(self, now: datetime) -> bool:
        """Delete the rows older than the retention; False if the database refused (retried later)."""
        try:
            with self.engine.begin() as connection:
                gone = connection.execute(
                    delete(served_table).where(served_table.c.served_at < now - self._retention)
                ).rowcount
        except SQLAlchemyError:
            log.exception("cards-served log: retention purge failed; will retry")
            return False
        if gone:
            log.info("cards-served log: purged %d records older than %d days", gone, self._retention.days)
        return True

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def close(self) -> None:
        """Flush and stop the writer. Rows recorded later are written in place."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        if not self.flush():
            log.error("cards-served log: %d records could not be written at shutdown and are lost", self.pending())
        _open_logs.discard(self)


# ---------------------------------------------------------------- reading


def read_window(engine: Engine, since: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The cards served since ``since`` and the feedback on exactly those cards, as plain dicts."""
    s, f = served_table.c, feedback_table.c
    in_window = s.served_at >= since
    served_query = select(
        s.served_at, s.service_id, s.hook, s.rule_code, s.indicator, s.card_uuid, s.suggestion_uuids, s.silent
    ).where(in_window).order_by(s.id)
    feedback_query = select(
        f.id, f.card_uuid, f.outcome, f.accepted_suggestions, f.override_reason, f.outcome_timestamp
    ).where(f.card_uuid.in_(select(s.card_uuid).where(in_window))).order_by(f.id)
    with engine.connect() as connection:
        served = [dict(row._mapping) for row in connection.execute(served_query)]
        feedback = [dict(row._mapping) for row in connection.execute(feedback_query)]
    return served, feedback
