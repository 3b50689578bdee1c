"""A slow local FHIR server for the no-prefetch benchmark (127.0.0.1 only).

When the EHR sends no prefetch the service reads ten searches from the FHIR
server. A real server answers each in tens of milliseconds; this stub adds a
fixed delay per query (``--delay``) so the benchmark shows whether the
service waits for the slowest query (concurrent reads) or for the sum.

It answers the searches the service's prefetch templates make, for one
patient record from :mod:`bench.patients`: ``Patient/<id>`` and
``<Type>?patient=<id>`` with the ``code`` (system|code list), ``status``,
``clinical-status``, ``_sort=-date`` and ``_count`` parameters honoured.

Run: ``python bench/fhir_stub.py --port 8099 --delay 0.05 --size 200``
(it regenerates the same deterministic record the harness sends).
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.patients import PatientRecord, generate_record, search_bundle

_DATE_FIELDS = ("effectiveDateTime", "occurrenceDateTime", "authoredOn", "recordedDate", "onsetDateTime")


def _date_of(resource: Mapping[str, Any]) -> str:
    for name in _DATE_FIELDS:
        value = resource.get(name)
        if isinstance(value, str):
            return value
    period = resource.get("performedPeriod") or resource.get("effectivePeriod") or {}
    return period.get("start", "") if isinstance(period, dict) else ""


def _codes_of(resource: Mapping[str, Any]) -> set[str]:
    concept = resource.get("code") or resource.get("vaccineCode") or {}
    codings = concept.get("coding", []) if isinstance(concept, dict) else []
    out: set[str] = set()
    for coding in codings:
        out.add(f"{coding.get('system', '')}|{coding.get('code', '')}")
        out.add(str(coding.get("code", "")))
    return out


def _status_of(resource: Mapping[str, Any], param: str) -> str | None:
    if param == "clinical-status":
        concept = resource.get("clinicalStatus") or {}
        codings = concept.get("coding", []) if isinstance(concept, dict) else []
        return codings[0].get("code") if codings else None
    return resource.get("status")


def search(record: PatientRecord, path: str, query: str) -> tuple[int, dict[str, Any]]:
    """Answer one FHIR read or search against ``record``: (status, JSON body)."""
    parts = [p for p in path.split("/") if p]
    if "fhir" in parts:
        parts = parts[parts.index("fhir") + 1:]
    if len(parts) == 2 and parts[0] == "Patient":
        patient = record.by_key["patient"][0]
        if parts[1] != patient["id"]:
            return 404, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}
        return 200, patient
    if len(parts) != 1:
        return 400, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-supported"}]}
    resource_type = parts[0]
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    if params.get("patient", "").removeprefix("Patient/") != record.patient_id:
        return 200, search_bundle([])
    found = [r for r in record.all_resources() if r["resourceType"] == resource_type]
    if "code" in params:
        wanted = set(params["code"].split(","))
        found = [r for r in found if _codes_of(r) & wanted]
    for param in ("status", "clinical-status"):
        if param in params:
            allowed = set(params[param].split(","))
            found = [r for r in found if _status_of(r, param) in allowed]
    if params.get("_sort") in ("-date", "-_lastUpdated"):
        found.sort(key=_date_of, reverse=True)
    if "_count" in params and params["_count"].isdigit():
        found = found[: int(params["_count"])]
    return 200, search_bundle(found)


def make_server(
    record: PatientRecord, port: int, delay: float, token: str = "bench"
) -> ThreadingHTTPServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 that sleeps ``delay`` s per request."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the service's Session reuses connections
        # Headers and body go out in two writes; with Nagle on, the body waits
        # for the client's delayed ACK (~40 ms on Linux), which would add to --delay.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            started = time.monotonic()
            if self.headers.get("Authorization") != f"Bearer {token}":
                status, body = 401, {"resourceType": "OperationOutcome",
                                     "issue": [{"severity": "error", "code": "login"}]}
            else:
                split = urlsplit(self.path)
                status, body = search(record, split.path, split.query)
            data = json.dumps(body).encode()
            remaining = delay - (time.monotonic() - started)
            if remaining > 0:
                time.sleep(remaining)
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, _format: str, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.request_queue_size = 256
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds added to every request")
    parser.add_argument("--size", type=int, default=200, help="resources in the patient's record")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patient-id", default="bench-1")
    parser.add_argument("--now", help="ISO datetime the record is relative to (default: now)")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop by itself after this long")
    args = parser.parse_args(argv)
    now = datetime.fromisoformat(args.now) if args.now else datetime.now(UTC)
    record = generate_record(args.size, seed=args.seed, patient_id=args.patient_id, now=now)
    server = make_server(record, args.port, args.delay)
    stopper = threading.Timer(args.max_seconds, server.shutdown)
    stopper.daemon = True
    stopper.start()
    print(f"fhir stub on http://127.0.0.1:{args.port}/fhir delay={args.delay}s size={args.size}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
