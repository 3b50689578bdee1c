"""Real gunicorn servers for the serving tests: the production config
(gunicorn.conf.py) on a free loopback port, stopped at teardown."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import loopback_port

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    return loopback_port()


@dataclass
class Gunicorn:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]


def wait_ready(server: Gunicorn, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {server.process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(server.base_url + path, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"gunicorn did not answer {path} within {timeout:.0f} s:\n{server.log()}")


@pytest.fixture
def start_gunicorn(tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    """``start_gunicorn(app, env, ready_path, python)``: gunicorn -c gunicorn.conf.py ``app``
    run by ``python`` (this interpreter by default), with ``env`` on top of an
    environment cleared of CDS_ and proxy settings."""
    started: list[Gunicorn] = []

    def _start(app: str = "app:app", env: Mapping[str, str] | None = None, ready_path: str = "/healthz",
               python: str = sys.executable) -> Gunicorn:
        port = free_port()
        environ = {k: v for k, v in os.environ.items()
                   if not k.startswith("CDS_") and k not in ("FORWARDED_ALLOW_IPS", "WEB_CONCURRENCY")}
        environ.update({"HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "1", **(env or {})})
        log_path = tmp_path / f"gunicorn-{port}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                # No control socket: its default path is per user, shared by concurrent runs.
                [python, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--no-control-socket", app],
                cwd=ROOT, env=environ, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Gunicorn(port, process, log_path)
        started.append(server)
        wait_ready(server, ready_path)
        return server

    yield _start
    for server in started:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            try:
                server.process.wait(25)
            except subprocess.TimeoutExpired:
                os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait(10)
