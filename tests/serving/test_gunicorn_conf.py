"""The production gunicorn settings (gunicorn.conf.py) hold what the README promises."""
from __future__ import annotations

import gc
import runpy
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def load(monkeypatch, **environ):
    for name in ("WEB_CONCURRENCY", "GUNICORN_THREADS", "HOST", "PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONF))


def test_workers_threads_and_bind_come_from_the_environment(monkeypatch):
    conf = load(monkeypatch, WEB_CONCURRENCY="3", GUNICORN_THREADS="2", PORT="9090")
    assert (conf["workers"], conf["threads"], conf["bind"]) == (3, 2, "0.0.0.0:9090")
    assert conf["worker_class"] == "gthread"


def test_timeouts_stay_below_what_an_ehr_waits_and_shutdown_is_graceful(monkeypatch):
    conf = load(monkeypatch)
    assert 0 < conf["timeout"] <= 30 and conf["graceful_timeout"] >= 10
    assert conf["accesslog"] == "-" and conf["errorlog"] == "-"


@pytest.fixture
def restore_gc():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_worker_init_freezes_the_loaded_heap_and_raises_the_gc_threshold(monkeypatch, restore_gc):
    conf = load(monkeypatch)
    conf["post_worker_init"](None)
    assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] == 10_000
