"""Processes the benchmark starts and always stops: gunicorn and the FHIR stub.

Gunicorn is started the way production starts it (``gunicorn -c
gunicorn.conf.py app:app``, several workers) but bound to 127.0.0.1 on a free
port. Each process gets its own session, so a Ctrl-C in the terminal reaches
only the harness, which then stops them in order (SIGTERM, a grace period,
then SIGKILL), by pid.

Memory is read from ``/proc/<pid>/status``: VmHWM is a process's peak
resident set. Workers are recycled (``max_requests``), which resets their
peak, so a sampler thread keeps the highest value seen per pid.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _status_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (the gunicorn workers of a master)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces, so split after ')'
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry))
    return sorted(found)


class ManagedProcess:
    """A child process in its own session, stopped by pid on ``stop``."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path = ROOT) -> None:
        self.name = name
        self.log_path = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 25.0) -> int | None:
        """SIGTERM (gunicorn drains in-flight requests), then SIGKILL after ``grace`` s."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode


def wait_http_ok(port: int, path: str, timeout: float, proc: ManagedProcess) -> None:
    """Poll ``http://127.0.0.1:port/path`` until it answers 200, the process dies, or time runs out."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.proc.returncode}) before it was ready:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except OSError as error:
            last = str(error)
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} not ready after {timeout}s ({last}):\n{proc.log_tail()}")


def start_gunicorn(
    app_spec: str, env_overrides: Mapping[str, str], *, name: str, ready_path: str = "/healthz",
    timeout: float = 60.0,
) -> tuple[ManagedProcess, int]:
    """``gunicorn -c gunicorn.conf.py <app_spec>`` on 127.0.0.1:<free port>, ready."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update({"HOST": "127.0.0.1", "PORT": str(port), "PYTHONUNBUFFERED": "1"})
    env.update(env_overrides)
    argv = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), app_spec]
    proc = ManagedProcess(name, argv, env)
    try:
        wait_http_ok(port, ready_path, timeout, proc)
    except BaseException:
        proc.stop(grace=5)
        raise
    return proc, port


def start_fhir_stub(delay: float, size: int, now_iso: str, *, max_seconds: float) -> tuple[ManagedProcess, int]:
    port = free_port()
    argv = [
        sys.executable, str(ROOT / "bench" / "fhir_stub.py"), "--port", str(port), "--delay", str(delay),
        "--size", str(size), "--now", now_iso, "--max-seconds", str(max_seconds),
    ]
    proc = ManagedProcess("fhir-stub", argv, dict(os.environ))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"FHIR stub exited:\n{proc.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.stop(grace=2)
    raise RuntimeError("FHIR stub did not start listening in 30 s")


class MemorySampler:
    """Keeps the peak VmHWM/VmRSS seen per gunicorn worker while it runs."""

    def __init__(self, master_pid: int, interval: float = 0.25) -> None:
        self.master_pid = master_pid
        self.interval = interval
        self.peak_hwm_kib: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()

    def sample(self) -> None:
        for pid in children_of(self.master_pid):
            hwm = _status_kib(pid, "VmHWM")
            if hwm is not None:
                self.peak_hwm_kib[pid] = max(hwm, self.peak_hwm_kib.get(pid, 0))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def summary(self) -> dict[str, object]:
        peaks = sorted(self.peak_hwm_kib.values())
        return {
            "workers_seen": len(peaks),
            "peak_rss_mib_max": round(peaks[-1] / 1024, 1) if peaks else None,
            "peak_rss_mib_per_worker": [round(p / 1024, 1) for p in peaks],
            "master_rss_mib": round((_status_kib(self.master_pid, "VmHWM") or 0) / 1024, 1),
        }
