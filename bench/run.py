"""One command for the speed numbers: ``python bench/run.py [--quick]``.

Everything runs against processes it starts on 127.0.0.1 and stops, all under
``gunicorn -c gunicorn.conf.py`` (the production config), with load from
``wrk`` (bench/wrk.py; the Python generator when wrk is missing):

* **side by side**: the service and a trivial Flask endpoint that decodes the
  same request body (bench/baseline_app.py: with Flask's decoder, the targets'
  floor, and with simdjson, the service's own), same server config, same run,
  measured in alternating rounds so drift hits both alike; for the standard
  200-resource patient and a history-heavy one (old panels, stopped drugs,
  resolved conditions). Ratios: median at 1 client, throughput and p99 at 8;
* **record size**: 100, 1,000 and 10,000 resources at 1 client (linear?);
* **no prefetch**: the ten reads from a FHIR stub answering after 50 ms;
* **slow FHIR isolation**: complete-prefetch calls at 1 client while twelve
  other calls wait on a FHIR stub that takes 3 s per query;
* **connection balance**: how the 8-client load splits over the workers
  (CPU per worker), since a few keep-alive connections could all land on one;
* peak RSS per worker (VmHWM); an in-process profile of 200 and 10,000 resources.

Results: a table on stdout, JSON in ``bench/results/<timestamp>-<mode>.json``
and ``bench/results/latest.json``. The targets are reported, never asserted.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.patients import generate_history_heavy, generate_record, hook_request
from bench.servers import ROOT, MemorySampler, children_of, start_fhir_stub, start_gunicorn
from bench.wrk import measure, wrk_path

SIGN = "/cds-services/ixabepilone-order-sign"
RESULTS = ROOT / "bench" / "results"
BIG_BODY_LIMIT = str(64 * 1024 * 1024)  # a 10,000-resource prefetch is about 8.5 MB
SLOW_FHIR_DELAY = 3.0  # s per query, under the call's 4 s FHIR deadline
SLOW_CALLERS = 12  # calls waiting on the slow FHIR server at once (6 places per worker, 2 workers)

# The targets ("Speed near the floor"), reported as MET/MISS.
TARGETS = {
    "median_ratio_at_1": 2.0,  # service p50 / trivial p50, same body, at most
    "throughput_share_at_8": 0.60,  # service req/s / trivial req/s, at least
    "p99_ratio_at_8": 2.0,  # service p99 / trivial p99, at most
    "record_10000_ms": 100.0,  # p50 at 1 client, at most
    "growth_1000_to_10000": 1.2,  # cost per resource at 10,000 / at 1,000, at most (linear)
    "slow_fhir_latency_ratio": 1.5,  # prefetched p50 with slow FHIR calls in flight / without, at most
}


@dataclass(frozen=True)
class Plan:
    name: str
    rounds: int  # alternating baseline/service rounds per point
    duration: float  # seconds of measured load per round
    sizes: tuple[int, ...]
    profile: bool


FULL = Plan(name="full", rounds=3, duration=5.0, sizes=(100, 1000, 10000), profile=True)
QUICK = Plan(name="quick", rounds=1, duration=2.0, sizes=(100, 1000, 10000), profile=False)


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[-1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, ValueError, IndexError):
        return 0


def _worker_split(master: int, run: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], list[float]]:
    """``run()``'s result and each worker's share of the CPU it used meanwhile."""
    workers = children_of(master)
    before = {pid: _cpu_ticks(pid) for pid in workers}
    result = run()
    used = [max(0, _cpu_ticks(pid) - before[pid]) for pid in workers]
    total = sum(used) or 1
    return result, [round(u / total, 2) for u in used]


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(values), 2) if values else None


FLOORS = ("trivial", "trivial_simdjson")  # the floor (Flask's decoder), and the service's decoder


def side_by_side(floors: dict[str, int], svc: tuple[int, int], body: bytes, clients: int, plan: Plan,
                 log: Callable[[str], None]) -> dict[str, Any]:
    """Alternating rounds of each trivial endpoint and the service on the same body.

    Ratios against "trivial" (Flask's own decoder, the issue's floor) are the targets; those
    against "trivial_simdjson" (the service's decoder, nothing touched) show what is left
    once the faster decoder is given to the floor as well.
    """
    svc_port, svc_master = svc
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in (*floors, "service")}
    balance: list[list[float]] = []
    for _ in range(plan.rounds):
        for name, port in floors.items():
            rounds[name].append(measure(port, SIGN, body, clients, plan.duration))
        result, split = _worker_split(svc_master, lambda: measure(svc_port, SIGN, body, clients, plan.duration))
        rounds["service"].append(result)
        balance.append(split)
    point: dict[str, Any] = {"clients": clients, "rounds": rounds, "worker_cpu_split": balance}
    for side, rows in rounds.items():
        point[side] = {k: _median(rows, k) for k in ("rps", "p50_ms", "p95_ms", "p99_ms")}
        point[side]["errors"] = sum(r["errors"] for r in rows)
        point[side]["generator"] = rows[0]["generator"]
    s = point["service"]
    for name in floors:
        t = point[name]
        point["ratios" if name == "trivial" else f"ratios_{name}"] = {
            "median": round(s["p50_ms"] / t["p50_ms"], 2) if t["p50_ms"] else None,
            "throughput_share": round(s["rps"] / t["rps"], 2) if t["rps"] else None,
            "p99": round(s["p99_ms"] / t["p99_ms"], 2) if t["p99_ms"] else None,
        }
    t, r = point["trivial"], point["ratios"]
    line = (f"  {clients:>2} clients  trivial {t['rps']:>7} req/s p50 {t['p50_ms']:>7} p99 {t['p99_ms']:>7} ms | "
            f"service {s['rps']:>7} req/s p50 {s['p50_ms']:>7} p99 {s['p99_ms']:>7} ms | "
            f"median x{r['median']}, throughput {r['throughput_share']:.0%}, p99 x{r['p99']}")
    if "trivial_simdjson" in floors:
        t2, r2 = point["trivial_simdjson"], point["ratios_trivial_simdjson"]
        line += (f"\n             trivial (simdjson) {t2['rps']:>7} req/s p50 {t2['p50_ms']:>7} "
                 f"p99 {t2['p99_ms']:>7} ms"
                 f" | against it: median x{r2['median']}, throughput {r2['throughput_share']:.0%}, p99 x{r2['p99']}")
    log(f"{line}\n             service CPU per worker {balance}")
    return point


class SlowCallers:
    """Threads that keep hook calls waiting on the slow FHIR server (no prefetch) while they run."""

    def __init__(self, port: int, body: bytes, count: int) -> None:
        self.port, self.body = port, body
        self.stop = threading.Event()
        self.statuses: dict[int, int] = {}
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(count)]

    def _loop(self) -> None:
        while not self.stop.is_set():
            request = urllib.request.Request(f"http://127.0.0.1:{self.port}{SIGN}", data=self.body,
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
            except OSError:
                status = 0
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def __enter__(self) -> SlowCallers:
        for thread in self.threads:
            thread.start()
        time.sleep(1.0)  # every caller is now waiting on the slow server
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=SLOW_FHIR_DELAY + 10)


def evaluate(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def target(name: str, value: float | None, met: bool, text: str) -> None:
        if value is not None:
            out[name] = {"value": value, "target": text, "met": met}

    for patient, points in report["side_by_side"].items():
        one = next((p for p in points if p["clients"] == 1), None)
        eight = next((p for p in points if p["clients"] == 8), None)
        if one and one["ratios"]["median"] is not None:
            v = one["ratios"]["median"]
            target(f"{patient}: median ratio at 1 client", v, v <= TARGETS["median_ratio_at_1"],
                   f"<= {TARGETS['median_ratio_at_1']}")
        if eight and eight["ratios"]["throughput_share"] is not None:
            v = eight["ratios"]["throughput_share"]
            target(f"{patient}: throughput share at 8 clients", v, v >= TARGETS["throughput_share_at_8"],
                   f">= {TARGETS['throughput_share_at_8']}")
        if eight and eight["ratios"]["p99"] is not None:
            v = eight["ratios"]["p99"]
            target(f"{patient}: p99 ratio at 8 clients", v, v <= TARGETS["p99_ratio_at_8"],
                   f"<= {TARGETS['p99_ratio_at_8']}")
    sizes = {row["size"]: row for row in report["record_size"]}
    if 10000 in sizes:
        v = sizes[10000]["p50_ms"]
        target("10,000 resources, p50 ms at 1 client", v, v <= TARGETS["record_10000_ms"],
               f"<= {TARGETS['record_10000_ms']}")
    if 1000 in sizes and 10000 in sizes:
        v = round((sizes[10000]["p50_ms"] / 10000) / (sizes[1000]["p50_ms"] / 1000), 2)
        target("cost per resource, 10,000 / 1,000", v, v <= TARGETS["growth_1000_to_10000"],
               f"<= {TARGETS['growth_1000_to_10000']} (linear or better)")
    iso = report.get("slow_fhir_isolation")
    if iso and iso.get("ratio") is not None:
        v = iso["ratio"]
        target("prefetched p50 with slow FHIR calls in flight / without", v,
               v <= TARGETS["slow_fhir_latency_ratio"], f"<= {TARGETS['slow_fhir_latency_ratio']}")
    return out


def run(plan: Plan, delay: float, out_dir: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    standard = generate_record(200, now=now)
    bodies = {
        "standard 200": json.dumps(hook_request(standard)).encode(),
        "history-heavy 200": json.dumps(hook_request(generate_history_heavy(200, now=now))).encode(),
    }
    report: dict[str, Any] = {
        "started": now.isoformat(),
        "mode": plan.name,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_at_start": os.getloadavg()},
        "generator": "wrk" if wrk_path() else "python (wrk not installed)",
        "git": _git_state(),
        "gunicorn": _gunicorn_settings(),
        "plan": plan.__dict__,
        "body_bytes": {name: len(body) for name, body in bodies.items()},
        "side_by_side": {},
        "record_size": [],
        "no_prefetch": [],
        "memory": {},
        "notes": [],
    }
    db_dir = tempfile.mkdtemp(prefix="bench-db-")
    with contextlib.ExitStack() as stack:
        stub, stub_port = start_fhir_stub(delay, 200, now.isoformat(), max_seconds=3600)
        stack.callback(stub.stop, 5)
        slow, slow_port = start_fhir_stub(SLOW_FHIR_DELAY, 200, now.isoformat(), max_seconds=3600)
        stack.callback(slow.stop, 5)
        fhir_base, slow_base = f"http://127.0.0.1:{stub_port}/fhir", f"http://127.0.0.1:{slow_port}/fhir"
        service_env = {
            "CDS_ALLOW_UNAUTHENTICATED": "true",
            "CDS_DATABASE_URL": f"sqlite:///{db_dir}/feedback.sqlite3",
            "CDS_FHIR_SERVERS": f"{fhir_base},{slow_base}",
            "CDS_ALLOW_HTTP_FHIR": "true",
            "CDS_MAX_BODY_BYTES": BIG_BODY_LIMIT,
            "CDS_LOG_LEVEL": "WARNING",
        }
        report["service_env"] = service_env
        floors: dict[str, int] = {}
        for name, decoder in zip(FLOORS, ("flask", "simdjson"), strict=True):
            floor, floors[name] = start_gunicorn("bench.baseline_app:app", {"BENCH_BASELINE_DECODER": decoder},
                                                 name=name)
            stack.callback(floor.stop)
        svc, svc_port = start_gunicorn("app:app", service_env, name="service")
        stack.callback(svc.stop)
        with MemorySampler(svc.pid) as sampler:
            for name, body in bodies.items():
                log(f"\n== side by side: {name} ({len(body):,} bytes), trivial endpoints vs service ==")
                report["side_by_side"][name] = [
                    side_by_side(floors, (svc_port, svc.pid), body, clients, plan, log) for clients in (1, 8)]
            log("\n== record size, service, 1 client ==")
            for size in plan.sizes:
                body = json.dumps(hook_request(generate_record(size, now=now))).encode()
                row = {"size": size, "body_bytes": len(body),
                       **measure(svc_port, SIGN, body, 1, max(plan.duration, 3.0), warmup=1.0)}
                report["record_size"].append(row)
                log(f"  {size:>6} resources ({len(body):>10,} bytes): p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms,"
                    f" {row['requests']} calls")
            report["memory"]["service"] = sampler.summary()
            log(f"\n== no prefetch: ten reads from a FHIR stub answering after {delay * 1000:.0f} ms ==")
            no_prefetch = json.dumps(hook_request(standard, prefetch=False, fhir_server=fhir_base)).encode()
            for clients in (1, 8):
                row = measure(svc_port, SIGN, no_prefetch, clients, plan.duration)
                report["no_prefetch"].append(row)
                log(f"  {clients:>2} clients: {row['rps']} req/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms")
            log(f"\n== slow FHIR isolation: prefetched calls while {SLOW_CALLERS} calls wait "
                f"{SLOW_FHIR_DELAY:.0f} s per query ==")
            prefetched = bodies["standard 200"]
            alone = measure(svc_port, SIGN, prefetched, 1, plan.duration)
            slow_body = json.dumps(hook_request(standard, prefetch=False, fhir_server=slow_base)).encode()
            with SlowCallers(svc_port, slow_body, SLOW_CALLERS) as callers:
                beside = measure(svc_port, SIGN, prefetched, 1, plan.duration, warmup=0)
                health_began = time.monotonic()
                with urllib.request.urlopen(f"http://127.0.0.1:{svc_port}/healthz", timeout=30):
                    healthz_ms = round((time.monotonic() - health_began) * 1000, 1)
            report["slow_fhir_isolation"] = {
                "alone": alone, "with_slow_calls": beside, "healthz_ms_with_slow_calls": healthz_ms,
                "slow_call_statuses": {str(k): v for k, v in callers.statuses.items()},
                "ratio": round(beside["p50_ms"] / alone["p50_ms"], 2) if alone["p50_ms"] else None,
            }
            log(f"  alone p50 {alone['p50_ms']} ms; with slow calls in flight p50 {beside['p50_ms']} ms "
                f"(x{report['slow_fhir_isolation']['ratio']}); /healthz {healthz_ms} ms; "
                f"slow calls' statuses {callers.statuses}")
        report["memory"]["service_end"] = sampler.summary()
    report["targets"] = evaluate(report)
    if plan.profile:
        from bench.profile_hook import profile_size

        report["profiles"] = []
        for size, repeats in ((200, 50), (10000, 5)):
            try:
                report["profiles"].append(profile_size(size, repeats, out_dir))
            except (RuntimeError, ImportError) as error:
                report["notes"].append(f"profile {size}: {error}")
    return report


def _git_state() -> dict[str, Any]:
    def run_git(*argv: str) -> str:
        try:
            return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=10,
                                  check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": run_git("git", "rev-parse", "HEAD"),
            "dirty": bool(run_git("git", "status", "--porcelain", "--untracked-files=no"))}


def _gunicorn_settings() -> dict[str, Any]:
    """What gunicorn.conf.py resolves to here (workers, threads...)."""
    code = (
        "import json,runpy;c=runpy.run_path('gunicorn.conf.py');print(json.dumps({k:c.get(k) for k in "
        "('workers','worker_class','threads','timeout','keepalive','max_requests','reuse_port')}))"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=20,
                             check=False, env={**os.environ, "HOST": "127.0.0.1", "PORT": "0"})
        return json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}


def print_summary(report: dict[str, Any]) -> None:
    print("\n== summary ==")
    print(f"load generator: {report['generator']}; gunicorn: {report['gunicorn']}")
    print(f"{'patient':<20}{'clients':>8}{'trivial req/s':>15}{'service req/s':>15}{'trivial p50':>13}"
          f"{'service p50':>13}{'trivial p99':>13}{'service p99':>13}  ratios")
    for patient, points in report["side_by_side"].items():
        for p in points:
            t, s, r = p["trivial"], p["service"], p["ratios"]
            print(f"{patient:<20}{p['clients']:>8}{t['rps']:>15}{s['rps']:>15}{t['p50_ms']:>13}{s['p50_ms']:>13}"
                  f"{t['p99_ms']:>13}{s['p99_ms']:>13}  median x{r['median']}, throughput "
                  f"{r['throughput_share']:.0%}, p99 x{r['p99']}")
            if (r2 := p.get("ratios_trivial_simdjson")) is not None:
                t2 = p["trivial_simdjson"]
                print(f"{'  floor with simdjson':<28}{t2['rps']:>15}{'':>15}{t2['p50_ms']:>13}{'':>13}"
                      f"{t2['p99_ms']:>13}{'':>13}  median x{r2['median']}, throughput "
                      f"{r2['throughput_share']:.0%}, p99 x{r2['p99']}")
    print("\nrecord size (service, 1 client): " + ", ".join(
        f"{row['size']:,}: {row['p50_ms']} ms" for row in report["record_size"]))
    print(f"peak RSS per worker (MiB): {report['memory'].get('service_end', {}).get('peak_rss_mib_per_worker')}")
    print("\ntargets (reported, not asserted):")
    for name, t in report.get("targets", {}).items():
        print(f"  {'MET ' if t['met'] else 'MISS'} {name}: {t['value']} (target {t['target']})")
    for note in report.get("notes", []):
        print("note:", note)


def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"{stamp}-{report['mode']}.json"
    text = json.dumps(report, indent=1, default=str) + "\n"
    path.write_text(text, encoding="utf-8")
    tmp = out_dir / "latest.json.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out_dir / "latest.json")
    return path


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # unwind through the ExitStack: servers are stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the CDS service (127.0.0.1 only)")
    parser.add_argument("--quick", action="store_true", help="one short round per point (about 2 minutes)")
    parser.add_argument("--delay", type=float, default=0.05, help="FHIR stub delay per query for no-prefetch, s")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.no_profile:
        plan = Plan(**{**plan.__dict__, "profile": False})
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
