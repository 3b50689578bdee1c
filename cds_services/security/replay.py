"""Replay protection: each (iss, jti) is accepted once until its token expires.

CDS Hooks 2.0: ``jti`` is "a nonce ... used to protect against replay
attacks"; the best-practices page asks services to keep processed ``jti``
values for as long as tokens live. A captured request could otherwise be
resent verbatim within the token's lifetime.

``MemoryReplayStore`` serves one process. With several gunicorn workers or
replicas, a replay sent to another worker would pass, so ``SqlReplayStore``
shares the record through the database: the unique key on (iss, jti) makes
"check and record" one atomic insert.
"""
from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import (
    Column,
    Float,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    delete,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError


class ReplayStore(Protocol):
    def seen(self, jti: str, iss: str, expires_at: float) -> bool:
        """True if (iss, jti) was recorded and has not expired; otherwise record
        it until ``expires_at`` (epoch seconds) and return False."""
        ...


class MemoryReplayStore:
    """Per-process store; expired entries are dropped as time passes."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._expiry: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)

    def _purge(self, now: float) -> None:
        while self._heap and self._heap[0][0] < now:
            expires_at, iss, jti = heapq.heappop(self._heap)
            if self._expiry.get((iss, jti)) == expires_at:
                del self._expiry[(iss, jti)]

    def seen(self, jti: str, iss: str, expires_at: float) -> bool:
        with self._lock:
            now = self._clock()
            self._purge(now)
            current = self._expiry.get((iss, jti))
            if current is not None and current >= now:
                return True
            self._expiry[(iss, jti)] = expires_at
            heapq.heappush(self._heap, (expires_at, iss, jti))
            return False


metadata = MetaData()

replay_table = Table(
    "jwt_replay",
    metadata,
    Column("iss", String(500), nullable=False),
    Column("jti", String(255), nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
    PrimaryKeyConstraint("iss", "jti", name="pk_jwt_replay"),
)


class SqlReplayStore:
    """Shared store on a SQLAlchemy engine (SQLite file, PostgreSQL...).

    Expired rows are purged at most every ``purge_interval_seconds``; a row
    whose token expired is reused if the same jti comes back later.
    """

    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], float] = time.time,
        purge_interval_seconds: float = 60.0,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._purge_interval = purge_interval_seconds
        self._next_purge = 0.0
        self._purge_lock = threading.Lock()
        try:
            metadata.create_all(engine, tables=[replay_table])
        except DBAPIError:
            # Workers starting together race to create the table; harmless once it exists.
            if not inspect(engine).has_table(replay_table.name):
                raise

    def purge(self) -> int:
        """Delete expired rows; returns how many."""
        with self._engine.begin() as conn:
            result = conn.execute(delete(replay_table).where(replay_table.c.expires_at < self._clock()))
        return result.rowcount or 0

    def _maybe_purge(self, now: float) -> None:
        with self._purge_lock:
            if now < self._next_purge:
                return
            self._next_purge = now + self._purge_interval
        self.purge()

    def seen(self, jti: str, iss: str, expires_at: float) -> bool:
        now = self._clock()
        self._maybe_purge(now)
        if self._try_insert(jti, iss, expires_at):
            return False
        key = (replay_table.c.iss == iss) & (replay_table.c.jti == jti)
        with self._engine.begin() as conn:
            row = conn.execute(select(replay_table.c.expires_at).where(key)).first()
            if row is None:
                # Purged between our insert and select: try once more, and
                # count a second conflict as seen (fail closed).
                pass
            elif row.expires_at >= now:
                return True
            else:
                # Recorded, but that token has expired: take the row over. If a
                # concurrent request took it first, ours is the replay.
                taken = conn.execute(
                    update(replay_table)
                    .where(key & (replay_table.c.expires_at < now))
                    .values(expires_at=expires_at)
                )
                return taken.rowcount != 1
        return not self._try_insert(jti, iss, expires_at)

    def _try_insert(self, jti: str, iss: str, expires_at: float) -> bool:
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(replay_table).values(iss=iss, jti=jti, expires_at=expires_at))
        except IntegrityError:
            return False
        return True
