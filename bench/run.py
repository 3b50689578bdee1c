"""One command for the "Speed and scale" numbers: ``python bench/run.py [--quick]``.

What it measures, all against processes it starts on 127.0.0.1 and stops:

* the service under gunicorn with ``gunicorn.conf.py`` (as in production):
  order-sign latency p50/p95/p99 and requests/s at 1, 8 and 32 concurrent
  clients, with a realistic 200-resource patient in full prefetch;
* the same without prefetch, the service reading the ten searches from a
  local FHIR stub that answers each after a fixed delay (default 50 ms):
  concurrent reads cost about one delay, serial ones ten;
* the cost curve as the record grows (10 ... 10,000 resources, 1 client);
* the floor: a trivial Flask endpoint under the same gunicorn config and
  load, so throughput reads as a share of what the stack can do at all;
* peak RSS per gunicorn worker (VmHWM);
* an in-process pyinstrument profile of the 200- and 10,000-resource calls.

Results: a table on stdout, JSON in ``bench/results/<timestamp>.json`` and
``bench/results/latest.json``. The targets are reported, never asserted.
Every load run is bounded in time and count, the whole run by ``--max-minutes``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import run_load
from bench.patients import generate_record, hook_request
from bench.servers import ROOT, MemorySampler, start_fhir_stub, start_gunicorn

SIGN = "/cds-services/ixabepilone-order-sign"
RESULTS = ROOT / "bench" / "results"
# The service's default body limit is 1 MiB; a 10,000-resource prefetch is
# about 8.5 MB, so the scaling runs raise it (CDS_MAX_BODY_BYTES).
BIG_BODY_LIMIT = str(64 * 1024 * 1024)

TARGETS = {
    "full_prefetch_p95_ms_at_8": 50.0,
    "throughput_share_of_baseline_at_8": 0.30,
    "no_prefetch_p95_ms_at_8": 150.0,
    "record_10000_ms": 500.0,
}


@dataclass(frozen=True)
class Plan:
    name: str  # "full" or "quick", for the results' file name
    clients: tuple[int, ...]
    duration: float  # seconds of measured load per point
    warmup: float
    max_requests: int  # per point
    sizes: tuple[int, ...]
    size_duration: float
    size_requests: int
    profile: bool
    variants: bool
    max_minutes: float


FULL = Plan(
    name="full", clients=(1, 8, 32), duration=10.0, warmup=2.0, max_requests=200_000,
    sizes=(10, 100, 1000, 10000), size_duration=8.0, size_requests=40,
    profile=True, variants=True, max_minutes=20.0,
)
QUICK = Plan(
    name="quick", clients=(1, 8, 32), duration=2.0, warmup=0.5, max_requests=20_000,
    sizes=(10, 100, 1000, 10000), size_duration=3.0, size_requests=5,
    profile=True, variants=False, max_minutes=6.0,
)


class Deadline:
    def __init__(self, minutes: float) -> None:
        self.stop_at = time.monotonic() + minutes * 60

    def left(self) -> float:
        return self.stop_at - time.monotonic()


def _git_state() -> dict[str, Any]:
    def run(*argv: str) -> str:
        try:
            return subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": run("git", "rev-parse", "HEAD"),
            "dirty": bool(run("git", "status", "--porcelain", "--untracked-files=no"))}


def _gunicorn_settings(env: dict[str, str]) -> dict[str, Any]:
    """What gunicorn.conf.py resolves to here (workers, threads...)."""
    code = (
        "import json,runpy;c=runpy.run_path('gunicorn.conf.py');"
        "print(json.dumps({k:c.get(k) for k in "
        "('workers','worker_class','threads','timeout','keepalive','max_requests')}))"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=20)
        return json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}


def _point(name: str, port: int, body: bytes, clients: int, plan: Plan, deadline: Deadline,
           *, duration: float | None = None, max_requests: int | None = None, warmup: float | None = None,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    duration = plan.duration if duration is None else duration
    duration = max(0.5, min(duration, deadline.left() - 5))
    result = run_load(
        port, SIGN, body, clients=clients, duration=duration,
        max_requests=plan.max_requests if max_requests is None else max_requests,
        warmup=plan.warmup if warmup is None else warmup,
    )
    row = {"scenario": name, **result.summary(), **(extra or {})}
    print(_format_row(row), flush=True)
    return row


def _format_row(row: dict[str, Any]) -> str:
    def f(v: Any, width: int, digits: int = 1) -> str:
        if v is None:
            return "-".rjust(width)
        return (f"{v:.{digits}f}" if isinstance(v, float) else str(v)).rjust(width)

    label = row["scenario"] + (f" [{row['size']} res]" if "size" in row else "")
    return (
        f"{label:<34}{f(row['clients'], 4)}{f(row['requests'], 8)}{f(row['rps'], 9)}"
        f"{f(row['p50_ms'], 9)}{f(row['p95_ms'], 9)}{f(row['p99_ms'], 9)}{f(row['errors'], 7)}"
        + (f"   first error: {row['first_error'][:120]}" if row.get("first_error") else "")
    )


HEADER = (
    f"{'scenario':<34}{'cli':>4}{'reqs':>8}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>7}"
)


def _find(rows: list[dict[str, Any]], scenario: str, clients: int, size: int | None = None) -> dict[str, Any] | None:
    for row in rows:
        if row["scenario"] == scenario and row["clients"] == clients and (size is None or row.get("size") == size):
            return row
    return None


def evaluate_targets(rows: list[dict[str, Any]], delay: float) -> dict[str, Any]:
    """The issue's targets against the measured rows (report only)."""
    out: dict[str, Any] = {}
    full8 = _find(rows, "full-prefetch", 8)
    base8 = _find(rows, "baseline", 8)
    none8 = _find(rows, "no-prefetch", 8)
    if full8 and full8["p95_ms"] is not None:
        out["full_prefetch_p95_ms_at_8"] = {
            "value": full8["p95_ms"], "target": f"< {TARGETS['full_prefetch_p95_ms_at_8']}",
            "met": full8["p95_ms"] < TARGETS["full_prefetch_p95_ms_at_8"],
        }
    if full8 and base8 and base8["rps"]:
        share = full8["rps"] / base8["rps"]
        out["throughput_share_of_baseline_at_8"] = {
            "value": round(share, 3), "target": f">= {TARGETS['throughput_share_of_baseline_at_8']}",
            "met": share >= TARGETS["throughput_share_of_baseline_at_8"],
        }
    if none8 and none8["p95_ms"] is not None:
        out["no_prefetch_p95_ms_at_8"] = {
            "value": none8["p95_ms"],
            "target": f"< {TARGETS['no_prefetch_p95_ms_at_8']} (FHIR delay {delay * 1000:.0f} ms)",
            "met": none8["p95_ms"] < TARGETS["no_prefetch_p95_ms_at_8"],
        }
    none1, full1 = _find(rows, "no-prefetch", 1), _find(rows, "full-prefetch", 1)
    if none1 and full1 and none1["p50_ms"] is not None and full1["p50_ms"] is not None and delay > 0:
        waits = (none1["p50_ms"] - full1["p50_ms"]) / (delay * 1000)
        out["fhir_wait_in_delays_at_1"] = {
            "value": round(waits, 2),
            "target": "about 1 (concurrent reads); 10 would be serial",
            "met": waits < 2.0,
        }
    sizes = {row["size"]: row for row in rows if row["scenario"] == "record-size" and row["p50_ms"] is not None}
    if 10000 in sizes:
        value = sizes[10000]["p50_ms"]
        out["record_10000_ms"] = {
            "value": value, "target": f"< {TARGETS['record_10000_ms']} (p50, 1 client)",
            "met": value < TARGETS["record_10000_ms"],
        }
    if 1000 in sizes and 10000 in sizes:
        per_1000 = sizes[1000]["p50_ms"] / 1000
        per_10000 = sizes[10000]["p50_ms"] / 10000
        out["cost_per_resource_growth_1000_to_10000"] = {
            "value": round(per_10000 / per_1000, 2),
            "target": "<= ~1.2 (linear or better)",
            "met": per_10000 / per_1000 <= 1.2,
        }
    return out


def run(plan: Plan, delay: float, out_dir: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    deadline = Deadline(plan.max_minutes)
    now = datetime.now(UTC).replace(microsecond=0)
    record = generate_record(200, now=now)
    full_body = json.dumps(hook_request(record)).encode()
    rows: list[dict[str, Any]] = []
    memory: dict[str, Any] = {}
    report: dict[str, Any] = {
        "started": now.isoformat(),
        "mode": plan.name,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "git": _git_state(),
        "gunicorn": _gunicorn_settings({**os.environ, "HOST": "127.0.0.1", "PORT": "0"}),
        "plan": plan.__dict__,
        "fhir_delay_s": delay,
        "body_bytes_200": len(full_body),
        "rows": rows,
        "memory": memory,
        "notes": [],
    }
    db_dir = tempfile.mkdtemp(prefix="bench-db-")

    with contextlib.ExitStack() as stack:
        # 1. the floor
        log("\n== baseline: trivial Flask endpoint, same gunicorn config ==\n" + HEADER)
        proc, port = start_gunicorn("bench.baseline_app:app", {}, name="baseline")
        stack.callback(proc.stop)
        with MemorySampler(proc.pid) as sampler:
            for clients in plan.clients:
                if deadline.left() < 10:
                    break
                rows.append(_point("baseline", port, full_body, clients, plan, deadline))
        memory["baseline"] = sampler.summary()
        proc.stop()

        # 2. the service, with a slow FHIR stub for the no-prefetch runs
        stub, stub_port = start_fhir_stub(delay, 200, now.isoformat(), max_seconds=plan.max_minutes * 60 + 60)
        stack.callback(stub.stop, 5)
        fhir_base = f"http://127.0.0.1:{stub_port}/fhir"
        service_env = {
            "CDS_ALLOW_UNAUTHENTICATED": "true",
            "CDS_DATABASE_URL": f"sqlite:///{db_dir}/feedback.sqlite3",
            "CDS_FHIR_SERVERS": fhir_base,
            "CDS_ALLOW_HTTP_FHIR": "true",
            "CDS_MAX_BODY_BYTES": BIG_BODY_LIMIT,
        }
        report["service_env"] = service_env
        no_prefetch_body = json.dumps(hook_request(record, prefetch=False, fhir_server=fhir_base)).encode()

        log("\n== service: gunicorn -c gunicorn.conf.py app:app ==\n" + HEADER)
        try:
            proc, port = start_gunicorn("app:app", service_env, name="service")
        except RuntimeError as error:
            report["notes"].append(f"service did not start: {error}")
            log(f"service did not start: {error}")
            report["targets"] = evaluate_targets(rows, delay)
            return report
        stack.callback(proc.stop)
        with MemorySampler(proc.pid) as sampler:
            for clients in plan.clients:
                if deadline.left() < 10:
                    break
                rows.append(_point("full-prefetch", port, full_body, clients, plan, deadline))
            memory["service_after_full_prefetch"] = sampler.summary()
            for clients in plan.clients:
                if deadline.left() < 10:
                    break
                rows.append(_point("no-prefetch", port, no_prefetch_body, clients, plan, deadline,
                                   extra={"fhir_delay_ms": delay * 1000}))
            for size in plan.sizes:
                if deadline.left() < 15:
                    report["notes"].append(f"record-size {size} skipped: out of time")
                    break
                body = json.dumps(hook_request(generate_record(size, now=now))).encode()
                rows.append(_point(
                    "record-size", port, body, 1, plan, deadline, duration=plan.size_duration,
                    max_requests=plan.size_requests, warmup=0.0 if size >= 10000 else plan.warmup,
                    extra={"size": size, "body_bytes": len(body)},
                ))
            memory["service_after_record_sizes"] = sampler.summary()
        proc.stop()

        # 3. the same no-prefetch load with a FHIR pool large enough for every thread's ten reads
        if plan.variants and deadline.left() > 60:
            workers = "40"
            log(f"\n== service with CDS_FHIR_MAX_WORKERS={workers} (4 threads x 10 keys) ==\n" + HEADER)
            proc, port = start_gunicorn(
                "app:app", {**service_env, "CDS_FHIR_MAX_WORKERS": workers}, name="service-pool40"
            )
            stack.callback(proc.stop)
            for clients in plan.clients:
                if deadline.left() < 10:
                    break
                rows.append(_point(f"no-prefetch pool={workers}", port, no_prefetch_body, clients, plan, deadline,
                                   extra={"fhir_delay_ms": delay * 1000}))
            proc.stop()

    report["targets"] = evaluate_targets(rows, delay)

    if plan.profile and deadline.left() > 30:
        from bench.profile_hook import profile_size

        report["profiles"] = []
        for size, repeats in ((200, 30 if plan.name == "full" else 10), (10000, 5 if plan.name == "full" else 2)):
            try:
                report["profiles"].append(profile_size(size, repeats, out_dir))
            except (RuntimeError, ImportError) as error:
                report["notes"].append(f"profile {size}: {error}")
    return report


def print_summary(report: dict[str, Any]) -> None:
    print("\n== summary ==\n" + HEADER)
    for row in report["rows"]:
        print(_format_row(row))
    print("\npeak RSS per gunicorn worker (VmHWM, MiB):")
    for phase, mem in report["memory"].items():
        print(f"  {phase:<30} max {mem['peak_rss_mib_max']}  all {mem['peak_rss_mib_per_worker']}")
    print("\ntargets (reported, not asserted):")
    for name, t in report.get("targets", {}).items():
        print(f"  {'MET ' if t['met'] else 'MISS'} {name}: {t['value']} (target {t['target']})")
    for profile in report.get("profiles", []):
        print(f"\nprofile, {profile['size']} resources: {profile['ms_per_call']} ms/call in-process "
              f"({profile['profile_file']}); top self time:")
        for item in profile["top_self"][:8]:
            print(f"  {item['share'] * 100:5.1f}%  {item['function']}")
    for note in report.get("notes", []):
        print("note:", note)


def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"{stamp}-{report['mode']}.json"
    text = json.dumps(report, indent=1, default=str) + "\n"
    tmp = out_dir / "latest.json.tmp"
    path.write_text(text, encoding="utf-8")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out_dir / "latest.json")
    return path


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # unwind through the ExitStack: servers are stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the CDS service (127.0.0.1 only)")
    parser.add_argument("--quick", action="store_true", help="short runs (about 2-3 minutes)")
    parser.add_argument("--delay", type=float, default=0.05, help="FHIR stub delay per query, seconds")
    parser.add_argument("--clients", type=int, nargs="+", help="override the concurrency levels")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--max-minutes", type=float, help="stop starting new runs after this long")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    overrides: dict[str, Any] = {}
    if args.clients:
        overrides["clients"] = tuple(args.clients)
    if args.no_profile:
        overrides["profile"] = False
    if args.max_minutes:
        overrides["max_minutes"] = args.max_minutes
    if overrides:
        plan = Plan(**{**plan.__dict__, **overrides})
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        report = run(plan, args.delay, args.out)
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped, no results written", file=sys.stderr)
        return 130
    print_summary(report)
    path = write_report(report, args.out)
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} and latest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
