"""Where a hook call spends its time: pyinstrument over in-process requests.

The app is built with ``create_app`` and called through Flask's test client,
so the profile holds our code, Flask and the JSON codec, without sockets or
gunicorn. The output is a call tree, a flat list by self time, and a flat
list by total time per function, written next to the benchmark results.

Run alone: ``python bench/profile_hook.py --sizes 200 10000``.
"""
from __future__ import annotations

import argparse
import json
import runpy
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.patients import generate_record, hook_request

SIGN = "/cds-services/ixabepilone-order-sign"
RESULTS = Path(__file__).resolve().parent / "results"


def _walk(frame: Any, stack: tuple[str, ...], self_times: dict, total_times: dict) -> None:
    name = f"{frame.function} ({frame.file_path_short}:{frame.line_no})"
    if frame.identifier == "[self]" or getattr(frame, "is_synthetic_leaf", False):
        return
    if name not in stack:  # count a recursive function's time once per path
        total_times[name] += frame.time
    self_times[name] += frame.total_self_time
    for child in frame.children:
        _walk(child, (*stack, name), self_times, total_times)


def _top(table: dict[str, float], whole: float, count: int) -> list[dict[str, Any]]:
    ranked = sorted(table.items(), key=lambda item: item[1], reverse=True)[:count]
    return [{"function": name, "seconds": round(t, 4), "share": round(t / whole, 3)} for name, t in ranked]


def profile_size(size: int, repeats: int, out_dir: Path, interval: float = 0.0005) -> dict[str, Any]:
    """Profile ``repeats`` order-sign calls with a ``size``-resource prefetch."""
    from pyinstrument import Profiler

    from app import create_app
    from cds_services.runtime import EXTENSION

    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        app = create_app(
            {
                "database_url": f"sqlite:///{tmp}/feedback.sqlite3",
                "allow_unauthenticated": True,
                "max_body_bytes": 64 * 1024 * 1024,
                "log_level": "WARNING",
            },
            environ={},
        )
        client = app.test_client()
        body = json.dumps(hook_request(generate_record(size))).encode()
        # The collector as a gunicorn worker runs it (gunicorn.conf.py post_worker_init): otherwise
        # its pauses land on whatever function happens to run and the profile blames that one.
        runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))["post_worker_init"](None)
        warm = client.post(SIGN, data=body, content_type="application/json")
        if warm.status_code != 200:
            raise RuntimeError(f"warm-up call failed: HTTP {warm.status_code} {warm.get_data(as_text=True)[:500]}")
        profiler = Profiler(interval=interval)
        started = time.perf_counter()
        profiler.start()
        for _ in range(repeats):
            client.post(SIGN, data=body, content_type="application/json")
        profiler.stop()
        wall = time.perf_counter() - started
        app.extensions[EXTENSION].close()

    session = profiler.last_session
    root = session.root_frame() if session else None
    self_times: dict[str, float] = defaultdict(float)
    total_times: dict[str, float] = defaultdict(float)
    if root is not None:
        _walk(root, (), self_times, total_times)
    whole = root.time if root is not None else 0.0
    out_dir.mkdir(parents=True, exist_ok=True)
    text = (
        f"# order-sign, {size} resources in prefetch, {repeats} calls, {wall / repeats * 1000:.1f} ms/call\n\n"
        + profiler.output_text(unicode=False, color=False, show_all=False)
        + "\n\n# flat, by self time\n"
        + profiler.output_text(unicode=False, color=False, flat=True, flat_time="self")
        + "\n\n# flat, by total time\n"
        + profiler.output_text(unicode=False, color=False, flat=True, flat_time="total")
    )
    path = out_dir / f"profile-{size}.txt"
    path.write_text(text, encoding="utf-8")
    return {
        "size": size,
        "repeats": repeats,
        "body_bytes": len(body),
        "ms_per_call": round(wall / repeats * 1000, 2),
        "profile_file": str(path),
        "top_self": _top(self_times, whole, 15) if whole else [],
        "top_total": _top(total_times, whole, 25) if whole else [],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Profile order-sign calls in-process")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 10000])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    for size in args.sizes:
        result = profile_size(size, repeats=max(3, min(50, 20000 // size)), out_dir=args.out)
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
