"""A small closed-loop HTTP/1.1 load generator (asyncio, stdlib only).

N clients each keep one keep-alive connection and send the same request
back to back, like N EHR sessions signing orders. Every run is bounded by a
duration and a request count, and every request by a timeout, so the
harness always stops by itself. Only 127.0.0.1 is allowed as a target.

Stdlib rather than locust/wrk: nothing to install, it posts the exact
multi-megabyte bodies the scaling runs need, and it costs little CPU next to
the server (it shares this machine's two cores with it; the baseline is
measured the same way, so the ratio stays fair).
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ALLOWED_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class LoadResult:
    clients: int
    requests: int
    errors: int
    elapsed_s: float
    latencies_ms: tuple[float, ...] = field(repr=False)
    statuses: dict[str, int] = field(default_factory=dict)
    first_error: str | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile of successful requests, in ms."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[rank - 1]

    def summary(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 2)

        ok = self.latencies_ms
        return {
            "clients": self.clients,
            "requests": self.requests,
            "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 3),
            "rps": round(self.rps, 1),
            "p50_ms": r(self.percentile(50)),
            "p95_ms": r(self.percentile(95)),
            "p99_ms": r(self.percentile(99)),
            "mean_ms": r(sum(ok) / len(ok) if ok else None),
            "max_ms": r(max(ok) if ok else None),
            "statuses": dict(self.statuses),
            "first_error": self.first_error,
        }


def build_request(method: str, host: str, port: int, path: str, body: bytes = b"") -> bytes:
    head = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Accept: application/json",
        "Connection: keep-alive",
    ]
    if body or method == "POST":
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep_alive) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
        return status, body, False
    keep_alive = headers.get("connection", "").lower() != "close"
    return status, body, keep_alive


async def _client(
    host: str,
    port: int,
    payload: bytes,
    stop_at: float,
    budget: list[int],
    timeout: float,
    latencies: list[float],
    statuses: Counter,
    errors: list[str],
    expect: bytes | None,
) -> None:
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        while time.monotonic() < stop_at and budget[0] > 0:
            budget[0] -= 1
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            reader, writer = conn
            started = time.perf_counter()
            try:
                writer.write(payload)
                await writer.drain()
                status, body, keep_alive = await asyncio.wait_for(_read_response(reader), timeout)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as error:
                statuses["exception"] += 1
                errors.append(f"{type(error).__name__}: {error}"[:300])
                writer.close()
                conn = None
                continue
            elapsed_ms = (time.perf_counter() - started) * 1000
            statuses[str(status)] += 1
            if status == 200 and (expect is None or expect in body):
                latencies.append(elapsed_ms)
            else:
                errors.append(f"HTTP {status}: {body[:300]!r}")
            if not keep_alive:
                writer.close()
                conn = None
    finally:
        if conn is not None:
            conn[1].close()


async def _run(
    host: str, port: int, payload: bytes, clients: int, duration: float,
    max_requests: int, timeout: float, expect: bytes | None,
) -> LoadResult:
    latencies: list[float] = []
    statuses: Counter = Counter()
    errors: list[str] = []
    budget = [max_requests]
    started = time.monotonic()
    stop_at = started + duration
    tasks = [
        asyncio.create_task(
            _client(host, port, payload, stop_at, budget, timeout, latencies, statuses, errors, expect)
        )
        for _ in range(clients)
    ]
    # Hard bound: a run never outlives its duration by more than one request timeout.
    done, pending = await asyncio.wait(tasks, timeout=duration + timeout + 5)
    for task in pending:
        task.cancel()
    errors.extend(f"client crashed: {task.exception()!r}" for task in done if task.exception() is not None)
    elapsed = time.monotonic() - started
    return LoadResult(
        clients=clients,
        requests=len(latencies),
        errors=len(errors),
        elapsed_s=elapsed,
        latencies_ms=tuple(latencies),
        statuses=dict(statuses),
        first_error=errors[0] if errors else None,
    )


def run_load(
    port: int,
    path: str,
    body: bytes,
    *,
    clients: int,
    duration: float,
    max_requests: int,
    warmup: float = 0.0,
    timeout: float = 30.0,
    expect: bytes | None = b'"cards"',
    host: str = "127.0.0.1",
) -> LoadResult:
    """POST ``body`` to ``path`` from ``clients`` concurrent connections.

    Stops at ``duration`` seconds or ``max_requests`` requests, whichever is
    first; ``warmup`` seconds of the same load run first and are discarded.
    A response counts as a success only with status 200 and ``expect`` in it.
    """
    if host not in ALLOWED_HOSTS:
        raise ValueError(f"benchmarks only target this machine's loopback, not {host!r}")
    payload = build_request("POST", host, port, path, body)
    if warmup > 0:
        asyncio.run(_run(host, port, payload, clients, warmup, max_requests, timeout, expect))
    return asyncio.run(_run(host, port, payload, clients, duration, max_requests, timeout, expect))
