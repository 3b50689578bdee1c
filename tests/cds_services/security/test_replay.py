"""Replay stores: a jti is accepted once per issuer until it expires, also
across store instances sharing one database (workers, replicas)."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine

from cds_services.security.replay import MemoryReplayStore, ReplayStore, SqlReplayStore, replay_table

from .conftest import NOW, FakeClock

ISS = "https://ehr.example.org"


@pytest.fixture
def engine(tmp_path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'replay.db'}")
    yield engine
    engine.dispose()


@pytest.fixture(params=["memory", "sql"])
def make_store(request, engine) -> Callable[[FakeClock], ReplayStore]:
    if request.param == "memory":
        return lambda clock: MemoryReplayStore(clock=clock)
    return lambda clock: SqlReplayStore(engine, clock=clock)


def test_first_use_is_recorded_and_second_is_a_replay(make_store, clock):
    store = make_store(clock)
    assert store.seen("jti-1", ISS, NOW + 60) is False
    assert store.seen("jti-1", ISS, NOW + 60) is True
    assert store.seen("jti-1", ISS, NOW + 60) is True


def test_same_jti_from_another_issuer_is_not_a_replay(make_store, clock):
    store = make_store(clock)
    assert store.seen("jti-1", ISS, NOW + 60) is False
    assert store.seen("jti-1", "https://other-ehr.example.org", NOW + 60) is False


@pytest.mark.parametrize(("elapsed", "replay"), [(59, True), (60, True), (61, False)])
def test_entries_last_until_their_expiry(make_store, clock, elapsed, replay):
    store = make_store(clock)
    store.seen("jti-1", ISS, NOW + 60)
    clock.advance(elapsed)
    assert store.seen("jti-1", ISS, clock() + 60) is replay


def test_memory_store_drops_expired_entries(clock):
    store = MemoryReplayStore(clock=clock)
    for n in range(100):
        store.seen(f"jti-{n}", ISS, NOW + 60)
    store.seen("late", ISS, NOW + 600)
    assert len(store) == 101
    clock.advance(61)
    store.seen("trigger", ISS, clock() + 60)
    assert len(store) == 2  # "late" and "trigger"


def test_two_sql_stores_on_one_sqlite_file_share_the_record(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    engine_a, engine_b = create_engine(url), create_engine(url)  # two processes' engines
    try:
        worker_a = SqlReplayStore(engine_a, clock=clock)
        worker_b = SqlReplayStore(engine_b, clock=clock)
        assert worker_a.seen("jti-1", ISS, NOW + 60) is False
        assert worker_b.seen("jti-1", ISS, NOW + 60) is True
        assert worker_b.seen("jti-2", ISS, NOW + 60) is False
        assert worker_a.seen("jti-2", ISS, NOW + 60) is True
    finally:
        engine_a.dispose()
        engine_b.dispose()


def test_sql_store_purges_expired_rows(engine, clock):
    store = SqlReplayStore(engine, clock=clock, purge_interval_seconds=3600)
    for n in range(10):
        store.seen(f"jti-{n}", ISS, NOW + 60)
    store.seen("late", ISS, NOW + 600)
    clock.advance(61)
    assert store.purge() == 10
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(replay_table)).scalar_one() == 1


def test_sql_store_purges_on_its_own_every_interval(engine, clock):
    store = SqlReplayStore(engine, clock=clock, purge_interval_seconds=120)
    store.seen("old", ISS, NOW + 60)
    clock.advance(121)
    store.seen("new", ISS, clock() + 60)
    with engine.connect() as conn:
        jtis = conn.execute(select(replay_table.c.jti)).scalars().all()
    assert jtis == ["new"]


def test_concurrent_replays_are_accepted_exactly_once(make_store, clock):
    store = make_store(clock)
    outcomes: list[bool] = []
    start = threading.Barrier(8)

    def attempt() -> None:
        start.wait()
        outcomes.append(store.seen("jti-race", ISS, NOW + 60))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False] + [True] * 7
