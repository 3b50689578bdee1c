"""The README's path, for real: gunicorn with CDS_ANALYTICS_TOKEN, calls from samples/, feedback, /analytics, the CLI.

The service runs as production runs it (``gunicorn -c gunicorn.conf.py
app:app``, two worker processes, real clock) on a SQLite file, and is called
over HTTP. Then it is stopped the way Kubernetes stops a pod (SIGTERM): every
card it answered must be in the cards-served log, the ones still queued in a
worker included.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from bench.servers import start_gunicorn
from cds_services.analytics.store import served_table

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE = (ROOT / "samples" / "order-sign-platelets-low.json").read_bytes()
SIGN = "/cds-services/ixabepilone-order-sign"
TOKEN = "ward-7-committee-Hk29xQ4v"


def http(port: int, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET")
    if data:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw, status, kind = response.read(), response.status, response.headers.get_content_type()
    except urllib.error.HTTPError as error:
        raw, status, kind = error.read(), error.code, error.headers.get_content_type()
    return status, (json.loads(raw) if kind == "application/json" else raw.decode())


def rows_in(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(served_table)).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture
def service(tmp_path):
    url = f"sqlite:///{tmp_path}/cds.sqlite3"
    proc, port = start_gunicorn("app:app", {
        "CDS_ALLOW_UNAUTHENTICATED": "true", "CDS_ANALYTICS_TOKEN": TOKEN, "CDS_DATABASE_URL": url,
        "CDS_LOG_LEVEL": "WARNING", "WEB_CONCURRENCY": "2",
    }, name="analytics-gunicorn")
    yield proc, port, url
    proc.stop(grace=25)


def test_calls_and_feedback_show_on_analytics_and_in_the_cli(service):
    _proc, port, url = service
    assert http(port, "/analytics.json")[0] == 401
    cards = []
    for _ in range(4):
        status, body = http(port, SIGN, SAMPLE)
        assert status == 200
        cards += body["cards"]
    platelets = [c for c in cards if c["source"]["topic"]["code"] == "platelets-low"]
    assert len(platelets) == 4  # the sample's latest platelets: 80,000/mm3
    feedback = {"feedback": [
        {"card": platelets[0]["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-25T15:02:40Z",
         "overrideReason": {"reason": {"system": "urn:ixabepilone-cds:override-reason", "code": "data-outdated",
                                       "display": "Data shown is outdated or wrong"}}},
        {"card": platelets[1]["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-25T15:03:10Z",
         "acceptedSuggestions": [{"id": platelets[1]["suggestions"][0]["uuid"]}]},
    ]}
    assert http(port, SIGN + "/feedback", feedback)[0] == 200

    # Each worker writes its queue within about a second; the page may be that far behind.
    deadline = time.monotonic() + 15
    document: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, document = http(port, "/analytics.json", token=TOKEN)
        assert status == 200
        if document["totals"]["fired"] == len(cards):
            break
        time.sleep(0.2)
    (entry,) = [r for r in document["rules"] if r["code"] == "platelets-low"]
    assert (entry["fired"], entry["accepted"], entry["overridden"], entry["no_feedback"], entry["override_rate"]) == (
        4, 1, 1, 2, 0.5)

    status, page = http(port, "/analytics", token=TOKEN)
    assert status == 200 and 'data-code="platelets-low"' in page and "<svg" in page

    environ = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    done = subprocess.run([sys.executable, "-m", "cds_services.analytics", "--json"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**environ, "CDS_DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    from_cli = json.loads(done.stdout)
    assert from_cli["rules"] == document["rules"] and from_cli["totals"] == document["totals"]
    table = subprocess.run([sys.executable, "-m", "cds_services.analytics"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60, env={**environ, "CDS_DATABASE_URL": url})
    (line,) = [x for x in table.stdout.splitlines() if x.startswith("platelets-low ")]
    assert line.split()[1:7] == ["4", "0", "1", "1", "2", "50%"]


def test_a_graceful_shutdown_loses_no_card_record(service):
    proc, port, url = service
    served = 0
    for _ in range(30):
        status, body = http(port, SIGN, SAMPLE)
        assert status == 200
        served += len(body["cards"])
    assert proc.stop(grace=25) == 0  # SIGTERM, as Kubernetes sends it; gunicorn exits cleanly
    assert rows_in(url) == served
