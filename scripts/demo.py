"""One command to see the service work end to end against a real FHIR server.

    make demo            (or: .venv/bin/python scripts/demo.py)

It starts the local FHIR R4 server (``scripts/fhir_server.py``; installed into
``.fhir-venv`` on first run, as the tests do), loads the test patients of
``tests/fixtures/patients/``, starts the service under gunicorn exactly as in
production but on 127.0.0.1 with authentication off, and fires one
``order-sign`` hook per patient with **no prefetch**, so every datum is read
from the FHIR server with the server's test token, as an EHR's token would be.
It prints each patient's cards beside the rule codes ``expected.json`` names,
stops both servers (also on Ctrl-C or SIGTERM) and exits 1 if any patient got
other cards than expected.

Only the standard library is used; the service runs from ``.venv`` (the
README's install command).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts import fhir_server as fs

ROOT = fs.ROOT
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
EXPECTED_FILE = fs.PATIENTS_DIR / "expected.json"
HOOK = "ixabepilone-order-sign"
INSTALL_HINT = "python3 -m venv .venv && .venv/bin/pip install -q -r requirements-dev.txt"


class DemoError(RuntimeError):
    """A step could not run; the message says which and why."""


@dataclass(frozen=True)
class Card:
    indicator: str
    code: str
    summary: str


@dataclass(frozen=True)
class Outcome:
    """One patient's hook call: what was expected and what came back."""

    patient_id: str
    expected: tuple[str, ...]
    cards: tuple[Card, ...]
    error: str | None = None  # set when the call did not answer 200

    @property
    def ok(self) -> bool:
        return self.error is None and sorted(c.code for c in self.cards) == sorted(self.expected)


# ---------------------------------------------------------------- the service


@dataclass(frozen=True)
class Service:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path


def launch_service(fhir_base: str, workdir: Path) -> Service:
    """gunicorn with the production config on 127.0.0.1:<free port>, allowed to call only ``fhir_base``.

    Returns at once, so the caller holds the process before waiting for it
    (:func:`wait_service`): an interrupt can then never leave it running."""
    if not GUNICORN.exists():
        raise DemoError(f"{GUNICORN} is missing: run the README's install command first:\n    {INSTALL_HINT}")
    port = fs.free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CDS_")}  # a reproducible demo
    env.update({
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "CDS_ALLOW_UNAUTHENTICATED": "true",
        "CDS_FHIR_SERVERS": fhir_base,
        "CDS_ALLOW_HTTP_FHIR": "true",
        "CDS_DATABASE_URL": f"sqlite:///{workdir / 'feedback.sqlite3'}",
    })
    log_path = workdir / "service.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            # No control socket: its default path is one per user, and a second gunicorn (the tests' demo run
            # beside yours) would take it over.
            [str(GUNICORN), "-c", "gunicorn.conf.py", "--no-control-socket", "app:app"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches this script only, which then stops gunicorn in order
        )
    return Service(f"http://127.0.0.1:{port}", process, log_path)


def wait_service(service: Service, timeout: float = fs.READY_TIMEOUT) -> None:
    """Poll /healthz until it answers 200 (about a second idle, more on a loaded machine: gunicorn boots its
    workers); the same bound as the FHIR server's."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        checkpoint()
        if service.process.poll() is not None:
            raise DemoError(f"the service exited with {service.process.returncode}:\n{_tail(service.log_path)}")
        try:
            with urllib.request.urlopen(f"{service.base_url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise DemoError(f"the service did not answer /healthz within {timeout:.0f} s")


def stop_service(service: Service, timeout: float = 25.0) -> None:
    """SIGTERM: gunicorn finishes in-flight calls (graceful_timeout 20 s), then SIGKILL."""
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGTERM)
        try:
            service.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait(timeout)


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------- the hooks


def call_hook(service: Service, body: dict[str, Any], timeout: float = 30.0) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{service.base_url}/cds-services/{HOOK}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


def run_patient(service: Service, fhir: fs.FhirServer, patient_id: str, expected: list[str], now: datetime) -> Outcome:
    body_sent = fs.hook_body(patient_id, fs.read_order(patient_id, now), fhir.base_url, fhir.token)
    status, body = call_hook(service, body_sent)
    if status != 200:
        issues = body.get("issue", []) if isinstance(body, dict) else []
        reason = "; ".join(str(i.get("diagnostics", "")) for i in issues) or str(body)[:300]
        return Outcome(patient_id, tuple(expected), (), f"HTTP {status}: {reason}")
    cards = tuple(
        Card(card.get("indicator", "?"), card.get("source", {}).get("topic", {}).get("code", "?"),
             card.get("summary", ""))
        for card in body.get("cards", [])
    )
    return Outcome(patient_id, tuple(expected), cards)


# ---------------------------------------------------------------- the table


def table(outcomes: list[Outcome], width: int = 0) -> str:
    """One block per patient: result and patient on its first line, then expected codes and cards side by side,
    one per line, so a patient with six findings stays as narrow as one with none."""
    width = width or shutil.get_terminal_size((160, 24)).columns
    blocks: list[list[tuple[str, ...]]] = []
    for o in outcomes:
        expected = sorted(o.expected) or ["(none)"]
        cards = [(c.indicator, c.code, c.summary) for c in o.cards] or [("", "(no cards)", "")]
        if o.error:
            cards = [("", "(error)", o.error)]
        block: list[tuple[str, ...]] = []
        for i in range(max(len(expected), len(cards))):
            head = ("OK" if o.ok else "MISMATCH", o.patient_id) if i == 0 else ("", "")
            code = expected[i] if i < len(expected) else ""
            block.append((*head, code, *(cards[i] if i < len(cards) else ("", "", ""))))
        blocks.append(block)
    header = ("result", "patient", "expected codes", "indicator", "card code", "summary")
    rows = [row for block in blocks for row in block]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    lead = sum(widths) + 2 * 5
    summary_width = max(width - lead - 1, 40)
    rule = "-" * (lead + summary_width)

    def lines(row: tuple[str, ...]) -> list[str]:
        cells = "  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=False))
        wrapped = textwrap.wrap(row[5], summary_width) or [""]
        return [f"{cells}  {wrapped[0]}".rstrip()] + [(" " * lead + more).rstrip() for more in wrapped[1:]]

    out = lines(header)
    for block in blocks:
        out.append(rule)
        for row in block:
            out += lines(row)
    return "\n".join(out)


# ---------------------------------------------------------------- main


class Interrupted(Exception):
    """Ctrl-C or SIGTERM was received; raised at the next checkpoint."""


_STOP = threading.Event()


def _on_signal(_signum: int, _frame: Any) -> None:
    """Only note the signal: raising here could land between a server's start and our holding its pid."""
    _STOP.set()


def checkpoint() -> None:
    """Between steps (and while waiting): stop if Ctrl-C or SIGTERM came."""
    if _STOP.is_set():
        raise Interrupted


def run(only: list[str], expected_file: Path = EXPECTED_FILE) -> int:
    expected = json.loads(expected_file.read_text(encoding="utf-8"))["patients"]
    known = {path.stem for path in fs.bundle_paths()}
    if unknown := sorted(set(only) - known):
        print(f"error: no such patient: {', '.join(unknown)} (known: {', '.join(sorted(known))})", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="ixa-demo-"))
    fhir: fs.FhirServer | None = None
    service: Service | None = None
    try:
        if not fs.is_installed():
            print(f"installing the FHIR server ({fs.PACKAGE}) into {fs.VENV} (first run only) ...", flush=True)
            fs.install()
        checkpoint()
        fhir = fs.start()
        print(f"FHIR server   {fhir.base_url}  (pid {fhir.pid})", flush=True)
        checkpoint()
        now = datetime.now(UTC).replace(microsecond=0)
        ids = fs.load_patients(fhir, now=now)
        print(f"loaded        {len(ids)} patients from {fs.PATIENTS_DIR.relative_to(ROOT)}", flush=True)
        checkpoint()
        service = launch_service(fhir.base_url, workdir)
        wait_service(service)
        print(f"CDS service   {service.base_url}/cds-services  (pid {service.process.pid})", flush=True)
        chosen = [p for p in ids if not only or p in only]
        print(f"firing        order-sign for {len(chosen)} patients, no prefetch (the service reads the FHIR server)\n",
              flush=True)
        outcomes = []
        for patient_id in chosen:
            checkpoint()
            outcomes.append(run_patient(service, fhir, patient_id, expected.get(patient_id, {}).get("rules", []), now))
        print(table(outcomes))
        bad = [o.patient_id for o in outcomes if not o.ok]
        print(f"\n{len(outcomes)} patients: {len(outcomes) - len(bad)} OK, {len(bad)} MISMATCH"
              + (f" ({', '.join(bad)})" if bad else ""))
        return 1 if bad else 0
    except (Interrupted, KeyboardInterrupt):
        print("\ninterrupted: stopping the servers", file=sys.stderr, flush=True)
        return 130
    except (DemoError, fs.FhirServerError) as exc:
        if _STOP.is_set():  # e.g. pip, in our process group, got the Ctrl-C too
            print("\ninterrupted: stopping the servers", file=sys.stderr, flush=True)
            return 130
        print(f"error: {exc}", file=sys.stderr)
        if service is not None:
            print(f"service log:\n{_tail(service.log_path)}", file=sys.stderr)
        return 2
    finally:
        stopped = []
        if service is not None:
            stop_service(service)
            stopped.append(f"the CDS service (pid {service.process.pid})")
        if fhir is not None:
            fs.stop(fhir)
            stopped.append(f"the FHIR server (pid {fhir.pid})")
        shutil.rmtree(workdir, ignore_errors=True)
        if stopped:
            print(f"stopped       {' and '.join(stopped)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("patients", nargs="*", help="patient ids to run (default: all)")
    parser.add_argument("--expected", type=Path, default=EXPECTED_FILE,
                        help="the expected rule codes per patient (default: %(default)s)")
    args = parser.parse_args(argv)
    # Ctrl-C reaches only this script (the servers run in their own sessions); it stops at the next step
    # and then stops both servers. A second Ctrl-C while stopping changes nothing.
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    return run(args.patients, args.expected)


if __name__ == "__main__":
    sys.exit(main())
