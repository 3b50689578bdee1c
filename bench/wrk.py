"""Load from ``wrk`` (a C load generator): the client takes little CPU, so on a 2-core machine
the numbers are the server's, not the generator's. Debian: ``apt-get install wrk``.

One POST body, ``clients`` keep-alive connections, one wrk thread, for ``duration`` seconds.
A Lua ``done`` hook prints the counts and latency percentiles as one JSON line, so nothing is
scraped from wrk's human-readable report. When wrk is not installed, :func:`measure` falls
back to the project's Python generator (bench/load.py) and says so in the result.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.load import run_load

_SCRIPT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests": %d, "duration_us": %d, "socket_errors": %d, "status_errors": %d, '
    .. '"p50_us": %d, "p95_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean, latency.max))
end
"""


def wrk_path() -> str | None:
    return shutil.which("wrk")


def _run_wrk(wrk: str, port: int, path: str, body: bytes, clients: int, duration: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        body_file = Path(tmp) / "body.json"
        body_file.write_bytes(body)
        script = Path(tmp) / "post.lua"
        script.write_text(_SCRIPT, encoding="utf-8")
        argv = [wrk, "-t1", f"-c{clients}", f"-d{max(1, round(duration))}s", "--timeout", "30s",
                "-s", str(script), f"http://127.0.0.1:{port}{path}"]
        done = subprocess.run(argv, env={**os.environ, "BENCH_BODY": str(body_file)}, capture_output=True,
                              text=True, timeout=duration + 60, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result (exit {done.returncode}): {done.stderr[-500:]}")
    raw = json.loads(line[len("BENCH "):])
    seconds = raw["duration_us"] / 1e6
    ok = raw["requests"] - raw["status_errors"]
    return {
        "generator": "wrk",
        "clients": clients,
        "requests": raw["requests"],
        "errors": raw["socket_errors"] + raw["status_errors"],
        "elapsed_s": round(seconds, 3),
        "rps": round(ok / seconds, 1) if seconds else 0.0,
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p95_ms": round(raw["p95_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "mean_ms": round(raw["mean_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
    }


def measure(port: int, path: str, body: bytes, clients: int, duration: float, *, warmup: float = 0.5,
            max_requests: int = 1_000_000) -> dict[str, Any]:
    """``clients`` connections posting ``body`` to ``path`` for ``duration`` seconds (after a warm-up)."""
    wrk = wrk_path()
    if wrk is None:
        result = run_load(port, path, body, clients=clients, duration=duration, max_requests=max_requests,
                          warmup=warmup).summary()
        return {"generator": "python (wrk not installed)", **result}
    if warmup > 0:
        _run_wrk(wrk, port, path, body, clients, warmup)
    return _run_wrk(wrk, port, path, body, clients, duration)
