"""A slow FHIR server must not starve the rest (issue "Deployable as shipped", item 1).

Under the shipped server config (``gunicorn.conf.py``: gthread, 8 threads per
worker) with one worker, eight hook calls wait on a FHIR server that drips one
byte a second. Each gives up at the call's deadline (CDS_FHIR_DEADLINE), at
most CDS_FHIR_MAX_WAITING_CALLS (6) of them wait at once, and meanwhile
``/healthz`` and a call whose data was all prefetched answer at once.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import stop_process
from tests.integration.test_fhir_failures import DrippingServer
from tests.support import loopback_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 3.0  # s
SAMPLE = json.loads((ROOT / "samples" / "order-sign-platelets-low.json").read_text(encoding="utf-8"))
SIGN = "/cds-services/ixabepilone-order-sign"


@pytest.fixture(scope="module")
def dripping() -> Iterator[DrippingServer]:
    with DrippingServer() as server:
        yield server


@pytest.fixture(scope="module")
def service(dripping: DrippingServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The shipped gunicorn.conf.py with one worker. A free port is picked here: with reuse_port
    (the shipped default) each worker binds the address itself, so ``:0`` would not say where."""
    port = loopback_port()
    workdir = tmp_path_factory.mktemp("isolation")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update({
        "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "1",
        "CDS_ALLOW_UNAUTHENTICATED": "true", "CDS_FHIR_SERVERS": dripping.base_url, "CDS_ALLOW_HTTP_FHIR": "true",
        "CDS_FHIR_DEADLINE": str(DEADLINE), "CDS_DATABASE_URL": f"sqlite:///{workdir / 'feedback.sqlite3'}",
    })
    gunicorn = Path(sys.executable).with_name("gunicorn")
    log_path = workdir / "service.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(gunicorn), "-c", "gunicorn.conf.py", "--no-control-socket", "app:app"],
                                   cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        ready = time.monotonic() + 60  # a busy 2-core machine boots a worker in a few seconds
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")[-2000:]
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < ready, "gunicorn did not answer /healthz within 60 s"
                time.sleep(0.1)
        yield base
    finally:
        stop_process(process)


def post(base: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
    began = time.monotonic()
    request = urllib.request.Request(f"{base}{SIGN}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, payload = response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        status, payload = error.code, json.loads(error.read())
    return status, payload, time.monotonic() - began


def timed_get(url: str) -> float:
    began = time.monotonic()
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
    return time.monotonic() - began


def test_slow_fhir_calls_do_not_starve_healthz_or_prefetched_calls(service: str, dripping: DrippingServer):
    slow_body = dict(SAMPLE, prefetch={}, fhirServer=dripping.base_url)  # every key must come from the dripping server
    quick_before = [post(service, SAMPLE)[2] for _ in range(3)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        slow = [pool.submit(post, service, slow_body) for _ in range(8)]
        time.sleep(0.5)  # the slow calls are now in flight, waiting on the dripping server
        waiting = sum(not f.done() for f in slow)
        healthz = [timed_get(f"{service}/healthz") for _ in range(5)]
        quick = [post(service, SAMPLE) for _ in range(5)]
        still_waiting = sum(not f.done() for f in slow)
        results = [f.result() for f in slow]
    assert waiting == 6 and still_waiting == 6  # every place taken while the quick calls ran (8 calls, 6 places)
    # /healthz and the prefetched call answer in well under the deadline the slow calls are held to.
    assert max(healthz) < 1.0, healthz
    assert all(status == 200 and "platelets-low" in json.dumps(body) for status, body, _ in quick)
    assert max(t for _, _, t in quick) < max(1.0, 3 * max(quick_before)), (quick, quick_before)
    # Every slow call ends by its deadline (plus scheduling), with the keys it could not read named.
    for status, body, elapsed in results:
        assert elapsed < DEADLINE + 2.0, elapsed
        assert status == 412
        text = body["issue"][0]["diagnostics"]
        assert "within the call's deadline" in text or "busy with other calls" in text
    assert sum("busy with other calls" in b["issue"][0]["diagnostics"] for _, b, _ in results) >= 2  # 8 calls, 6 places
