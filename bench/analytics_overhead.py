"""What the cards-served log (issue 14) costs a hook call: in-process, with the log on and off.

Issue 14 asks that logging the cards served not slow a hook call measurably.
The hook call only queues its rows (``record_served``); the database write
happens later on a background thread, in batches. This prints:

- the median in-process time of an order-sign call with the log on and with
  ``record`` replaced by a no-op, measured in alternating blocks so that
  machine noise falls on both alike;
- the time ``record_served`` itself takes per call (building and queuing the rows);
- the time the background thread spends writing a batch of 500 rows (SQLite),
  which the hook call does not wait for.

Run: ``python bench/analytics_overhead.py [--calls 2000]``. Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
SIGN = "/cds-services/ixabepilone-order-sign"
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # the sample's labs are from the day before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per mode (default 2000)")
    parser.add_argument("--block", type=int, default=100, help="calls per alternating block")
    args = parser.parse_args()

    from app import create_app
    from cds_services.analytics import record_served
    from cds_services.runtime import EXTENSION

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"database_url": f"sqlite:///{tmp}/bench.sqlite3", "allow_unauthenticated": True,
                          "log_level": "WARNING"}, environ={}, clock=lambda: NOW)
        cds = app.extensions[EXTENSION]
        client = app.test_client()
        body = (ROOT / "samples" / "order-sign-platelets-low.json").read_bytes()
        real_record = cds.analytics.record
        times: dict[str, list[float]] = {"log on": [], "log off": []}

        def run(mode: str, n: int) -> None:
            cds.analytics.record = real_record if mode == "log on" else (lambda _rows: None)
            for _ in range(n):
                started = time.perf_counter()
                response = client.post(SIGN, data=body, content_type="application/json")
                times[mode].append(time.perf_counter() - started)
                assert response.status_code == 200

        run("log on", 50)  # warm up both paths
        run("log off", 50)
        times = {"log on": [], "log off": []}
        for _ in range(max(1, args.calls // args.block)):
            run("log on", args.block)
            run("log off", args.block)
        cds.analytics.record = real_record

        card = json.loads(client.post(SIGN, data=body, content_type="application/json").data)["cards"]
        started = time.perf_counter()
        for _ in range(10_000):
            record_served(cds.analytics, now=NOW, service_id="ixabepilone-order-sign", hook="order-sign",
                          returned=card, silent=[], identity=None)
        record_us = (time.perf_counter() - started) / 10_000 * 1e6
        cds.analytics.flush()

        batch = cds.analytics
        for _ in range(500):
            record_served(batch, now=NOW, service_id="ixabepilone-order-sign", hook="order-sign",
                          returned=card, silent=[], identity=None)
        started = time.perf_counter()
        batch.flush()
        batch_ms = (time.perf_counter() - started) * 1000
        cds.close()

    on, off = (statistics.median(times[m]) * 1000 for m in ("log on", "log off"))
    p95 = {m: statistics.quantiles(times[m], n=20)[18] * 1000 for m in times}
    print(f"order-sign, in process, {len(times['log on'])} calls per mode (sample request, 1 card)")
    print(f"{'mode':<10} {'median ms':>10} {'p95 ms':>8}")
    print(f"{'log on':<10} {on:>10.3f} {p95['log on']:>8.3f}")
    print(f"{'log off':<10} {off:>10.3f} {p95['log off']:>8.3f}")
    print(f"difference of medians: {on - off:+.3f} ms ({(on - off) / off * 100:+.1f}%)")
    print(f"record_served per call (build + queue the rows): {record_us:.1f} us")
    print(f"background write of a 500-row batch (SQLite, not waited for by any call): {batch_ms:.1f} ms")


if __name__ == "__main__":
    main()
