"""A real FHIR R4 server on this machine, for integration tests.

Why: the service fetches missing prefetch data from the EHR's FHIR server.
Mocked HTTP (``responses``) only proves we parse what we wrote ourselves; a
real server proves our search URLs (comma OR lists, ``system|code`` tokens,
``_sort=-date``, ``_count``) return the resources we expect.

The server is sekmet-fhir (FastAPI + SQLite, from PyPI), installed into its
own virtual environment (``.fhir-venv``, gitignored) so its dependency pins
can never clash with the service's. Each start gets a fresh database and a
settings file in a new temp directory; it listens on 127.0.0.1 only, on a
free port, and accepts only a static bearer token.

Only the standard library is used here, so any Python 3.11 can run it:

    python scripts/fhir_server.py install      # idempotent
    python scripts/fhir_server.py start        # prints base URL, token, pid
    python scripts/fhir_server.py load         # loads tests/fixtures/patients/*.json
    python scripts/fhir_server.py stop

Fixture dates: a string that is exactly ``{{now}}``, ``{{now-2d}}``,
``{{now+3h}}`` (units d, h, m) is rendered as a UTC dateTime relative to the
moment of loading; a ``:date`` suffix (``{{now-30d:date}}``) renders a date.
Fixed files would go stale: the checks compare lab dates with the hook's time
using freshness windows of 7, 14 and 30 days.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("FHIR_SERVER_VENV", ROOT / ".fhir-venv"))
STATE_FILE = ROOT / ".fhir-server.json"
PATIENTS_DIR = ROOT / "tests" / "fixtures" / "patients"
DEFAULT_TOKEN = "ixa-integration-test-token"

PACKAGE = "sekmet-fhir==0.1.1"
# The versions sekmet-fhir 0.1.1 resolved to when this was written: pinned so
# a new upstream release cannot change the server under our tests.
PINS = (
    "annotated-doc==0.0.7", "annotated-types==0.8.0", "antlr4-python3-runtime==4.13.2", "anyio==4.16.0",
    "certifi==2026.10.19.post1", "cffi==2.1.1", "click==8.5.1", "cryptography==50.0.2", "Faker==40.63.0",
    "fastapi==0.165.0", "fhir.resources==8.3.0", "fhir_core==1.1.12", "fhirpathpy==2.2.4", "h11==0.16.0",
    "httpcore==1.0.9", "httptools==0.9.0", "httpx==0.28.1", "idna==3.20", "Jinja2==3.1.6", "jsonpatch==1.48",
    "jsonpointer==3.12", "lxml==6.1.3", "markdown-it-py==4.3.0", "MarkupSafe==3.0.4", "mdurl==0.1.2",
    "opentelemetry-api==1.45.2", "pycparser==3.12", "pydantic==2.14.4", "pydantic_core==2.50.5",
    "Pygments==2.21.0", "PyJWT==2.15.1", "python-dateutil==2.9.0.post0", "python-dotenv==1.2.4",
    "python-multipart==0.0.34", "PyYAML==6.0.4", "rich==15.0.0", "shellingham==1.5.4", "six==1.17.0",
    "starlette==1.10.0", "typer==0.29.2", "typing-inspection==0.4.5", "typing_extensions==4.16.0",
    "uvicorn==0.54.0", "uvloop==0.23.0", "watchfiles==1.3.0", "websockets==17.4",
)
STAMP = ".ixa-installed"  # written into the venv after a successful install of exactly these pins
# How long a fresh server may take to answer /metadata. Generous: it imports
# FastAPI and the fhir.resources models, which on a loaded 2-core machine takes
# several times its idle half second; the wait ends as soon as /metadata
# answers, or at once when the server exits.
READY_TIMEOUT = 120.0

PLACEHOLDER = re.compile(r"^\{\{now(?:(?P<sign>[+-])(?P<n>\d+)(?P<unit>[dhm]))?(?P<date>:date)?\}\}$")
UNITS = {"d": "days", "h": "hours", "m": "minutes"}


class FhirServerError(RuntimeError):
    """The server could not be installed, started, loaded or stopped; the message says why."""


@dataclass(frozen=True)
class FhirServer:
    """A running server: where it is, the token it accepts, and how to stop it."""

    base_url: str
    token: str
    pid: int
    workdir: str
    log_path: str
    # Only when started by this process: lets stop() reap the child.
    process: subprocess.Popen[bytes] | None = field(default=None, compare=False, repr=False)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/fhir+json"}


# ---------------------------------------------------------------- install


def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def _wanted_stamp() -> str:
    return "\n".join((PACKAGE, *PINS)) + "\n"


def is_installed(venv: Path = VENV) -> bool:
    stamp = venv / STAMP
    return venv_python(venv).exists() and stamp.exists() and stamp.read_text() == _wanted_stamp()


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Serialise installs: two pytest sessions must not pip into one venv at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install(venv: Path = VENV, timeout: float = 600.0) -> Path:
    """Create the server's venv and pip-install the pinned server into it, unless already done.

    Returns the venv's python. Raises FhirServerError with pip's output when
    the registry cannot be reached or a pin cannot be had.
    """
    with _lock(venv.parent / f"{venv.name}.lock"):
        if is_installed(venv):
            return venv_python(venv)
        if not venv_python(venv).exists():
            _run([sys.executable, "-m", "venv", str(venv)], timeout, "create the venv")
        _run(
            [str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", "-q", PACKAGE, *PINS],
            timeout,
            f"pip install {PACKAGE}",
        )
        (venv / STAMP).write_text(_wanted_stamp())
        return venv_python(venv)


def _run(cmd: list[str], timeout: float, what: str) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise FhirServerError(f"could not {what}: no answer within {timeout:.0f} s") from exc
    if done.returncode != 0:
        noise = "is ignored: it is neither a file nor a directory"  # this machine's pip config, harmless
        output = "\n".join(line for line in (done.stdout + done.stderr).splitlines() if noise not in line)
        raise FhirServerError(f"could not {what} (exit {done.returncode}):\n{output[-3000:]}")


# ---------------------------------------------------------------- start / stop


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_text(workdir: Path, port: int, token: str) -> str:
    """sekmet's settings.yaml (JSON is valid YAML): loopback only, bearer token, no simulator.

    The simulator would answer our MedicationRequests as a pharmacy and change
    them; strict inbound validation (fhir.resources R4B models) rejects a
    fixture with an unknown element instead of storing it.
    """
    settings = {
        "base_url": f"http://127.0.0.1:{port}/fhir",
        "host": "127.0.0.1",
        "port": port,
        "data_dir": str(workdir / "data"),
        "db_path": str(workdir / "data" / "sekmet.db"),
        "own_private_key_path": str(workdir / "keys" / "sekmet_private.pem"),
        "log_inbound": False,
        "simulator": {"enabled": False},
        "server_auth": {"types": ["bearer"], "tokens": [token]},
        "validation": {"inbound": "strict"},
    }
    return json.dumps(settings, indent=2) + "\n"


def start(
    venv: Path = VENV, token: str = DEFAULT_TOKEN, timeout: float = READY_TIMEOUT, attempts: int = 3
) -> FhirServer:
    """Start a fresh server (new temp dir and database) and wait until /metadata answers."""
    if not is_installed(venv):
        raise FhirServerError(f"the server is not installed in {venv}: run install() first")
    last: FhirServerError | None = None
    for _ in range(attempts):  # a free port can be taken between free_port() and the bind
        workdir = Path(tempfile.mkdtemp(prefix="ixa-fhir-"))
        (workdir / "data").mkdir()
        port = free_port()
        settings = workdir / "settings.yaml"
        settings.write_text(settings_text(workdir, port, token))
        log_path = workdir / "server.log"
        env = {**os.environ, "SEKMET_CONFIG": str(settings)}
        for key in ("SEKMET_BASE_URL", "SEKMET_DB", "SEKMET_PUBLIC_URL", "SEKMET_PORT"):
            env.pop(key, None)  # would override the settings file
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [str(venv / "bin" / "sekmet"), "serve", "--config", str(settings)],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal stops pytest, then pytest stops the server
            )
        server = FhirServer(f"http://127.0.0.1:{port}/fhir", token, process.pid, str(workdir), str(log_path), process)
        try:
            wait_ready(server, timeout)
            return server
        except FhirServerError as exc:
            last = exc
            stop(server)
    raise last or FhirServerError("the server did not start")


def wait_ready(server: FhirServer, timeout: float = READY_TIMEOUT) -> None:
    """Poll {base}/metadata (served without a token) until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise FhirServerError(f"the server exited with {server.process.returncode}:\n{log_tail(server)}")
        try:
            with urllib.request.urlopen(f"{server.base_url}/metadata", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise FhirServerError(f"{server.base_url}/metadata did not answer within {timeout:.0f} s:\n{log_tail(server)}")


def log_tail(server: FhirServer, chars: int = 3000) -> str:
    try:
        return Path(server.log_path).read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def stop(server: FhirServer, timeout: float = 10.0) -> None:
    """SIGTERM the server's pid (uvicorn shuts down cleanly), SIGKILL after timeout; remove its temp dir."""
    try:
        os.kill(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    else:
        if server.process is not None:
            try:
                server.process.wait(timeout)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(timeout)
        else:
            deadline = time.monotonic() + timeout
            while _alive(server.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(server.pid):
                os.kill(server.pid, signal.SIGKILL)
    if Path(server.workdir).name.startswith("ixa-fhir-"):
        shutil.rmtree(server.workdir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---------------------------------------------------------------- fixtures


def render(value: Any, now: datetime) -> Any:
    """A copy of ``value`` with every ``{{now±Nd}}`` string replaced by a date relative to ``now``."""
    if isinstance(value, dict):
        return {key: render(item, now) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, now) for item in value]
    if isinstance(value, str) and value.startswith("{{"):
        match = PLACEHOLDER.match(value)
        if match is None:
            raise ValueError(
                f"unknown date placeholder {value!r} (use {{{{now}}}}, {{{{now-2d}}}}, {{{{now-3h:date}}}})")
        when = now.astimezone(UTC).replace(microsecond=0)
        if match["n"]:
            delta = timedelta(**{UNITS[match["unit"]]: int(match["n"])})
            when = when + delta if match["sign"] == "+" else when - delta
        return when.strftime("%Y-%m-%d") if match["date"] else when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def bundle_paths(directory: Path = PATIENTS_DIR) -> list[Path]:
    """The patient bundles: every ``*.json`` except draft orders (``*.order.json``) and ``expected.json``."""
    return sorted(
        p for p in directory.glob("*.json") if not p.name.endswith(".order.json") and p.name != "expected.json"
    )


def read_bundle(path: Path, now: datetime) -> dict[str, Any]:
    return render(json.loads(path.read_text(encoding="utf-8")), now)


def read_order(patient_id: str, now: datetime, directory: Path = PATIENTS_DIR) -> dict[str, Any]:
    """The draft ixabepilone MedicationRequest that fires the hook for this patient (not on the server)."""
    return render(json.loads((directory / f"{patient_id}.order.json").read_text(encoding="utf-8")), now)


def hook_body(
    patient_id: str,
    order: dict[str, Any],
    fhir_base: str | None,
    token: str | None,
    prefetch: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An order-sign request as an EHR sends it: ``fhirServer`` and ``fhirAuthorization`` only when given."""
    body: dict[str, Any] = {
        "hookInstance": str(uuid.uuid4()),
        "hook": "order-sign",
        "context": {
            "userId": "Practitioner/onc-1",
            "patientId": patient_id,
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]},
        },
    }
    if fhir_base is not None:
        body["fhirServer"] = fhir_base
    if token is not None:
        body["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "ixabepilone-cds",
            "patient": patient_id,
        }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def request(
    server_or_base: FhirServer | str, token: str | None, method: str, path: str, body: Any = None, timeout: float = 30.0
) -> tuple[int, Any]:
    """One FHIR call with the bearer token; returns (status, parsed JSON or None)."""
    base = server_or_base.base_url if isinstance(server_or_base, FhirServer) else server_or_base
    token = token if token is not None else getattr(server_or_base, "token", None)
    headers = {"Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/fhir+json"
    req = urllib.request.Request(f"{base.rstrip('/')}/{path.lstrip('/')}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        try:
            raw = exc.read()
        finally:
            exc.close()
        try:
            return exc.code, json.loads(raw) if raw else None
        except ValueError:
            return exc.code, raw.decode(errors="replace")


def load_bundle(server: FhirServer | str, token: str | None, bundle: dict[str, Any]) -> dict[str, Any]:
    """POST one transaction Bundle to the base; all-or-nothing on the server."""
    status, body = request(server, token, "POST", "", bundle)
    if status != 200:
        raise FhirServerError(f"transaction rejected ({status}): {json.dumps(body)[:2000]}")
    return body


def load_patients(
    server: FhirServer | str, token: str | None = None, now: datetime | None = None, directory: Path = PATIENTS_DIR
) -> list[str]:
    """Render and load every patient bundle; returns the Patient ids in file order.

    PUT entries with fixed ids make loading idempotent: a second load updates
    the same resources instead of adding copies.
    """
    now = now or datetime.now(UTC)
    ids = []
    for path in bundle_paths(directory):
        bundle = read_bundle(path, now)
        try:
            load_bundle(server, token, bundle)
        except FhirServerError as exc:
            raise FhirServerError(f"{path.name}: {exc}") from exc
        ids += [e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    return ids


# ---------------------------------------------------------------- command line


def _save_state(server: FhirServer) -> None:
    state = {k: getattr(server, k) for k in ("base_url", "token", "pid", "workdir", "log_path")}
    STATE_FILE.write_text(json.dumps(state, indent=2) + "\n")


def _load_state() -> FhirServer:
    try:
        return FhirServer(**json.loads(STATE_FILE.read_text()))
    except FileNotFoundError as exc:
        raise FhirServerError(f"no running server recorded in {STATE_FILE}: run 'start' first") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="create .fhir-venv and install the server (idempotent)")
    start_cmd = sub.add_parser("start", help="install if needed, start on 127.0.0.1:<free port>, wait for /metadata")
    start_cmd.add_argument("--token", default=DEFAULT_TOKEN)
    sub.add_parser("stop", help="stop the server recorded by 'start'")
    load_cmd = sub.add_parser("load", help="load the patient bundles into the running server")
    load_cmd.add_argument("--dir", type=Path, default=PATIENTS_DIR)
    load_cmd.add_argument("--now", help="ISO datetime the {{now}} placeholders are relative to (default: now)")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            began = time.monotonic()
            print(f"installed: {install()} ({time.monotonic() - began:.1f} s)")
        elif args.command == "start":
            if STATE_FILE.exists() and _alive(_load_state().pid):
                raise FhirServerError(f"a server is already running: {STATE_FILE.read_text()}")
            install()
            server = start(token=args.token)
            _save_state(server)
            print(json.dumps({"base_url": server.base_url, "token": server.token, "pid": server.pid}))
        elif args.command == "stop":
            stop(_load_state())
            STATE_FILE.unlink(missing_ok=True)
            print("stopped")
        elif args.command == "load":
            server = _load_state()
            now = datetime.fromisoformat(args.now) if args.now else None
            if now is not None and now.tzinfo is None:
                now = now.replace(tzinfo=UTC)
            for patient_id in load_patients(server, now=now, directory=args.dir):
                print(patient_id)
    except FhirServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
