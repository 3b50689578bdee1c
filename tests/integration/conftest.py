"""Integration fixtures: one real FHIR R4 server per test session, loaded with the test patients.

The server (sekmet-fhir, see ``scripts/fhir_server.py``) is installed from
PyPI into ``.fhir-venv`` on first use. Without network that install fails:
under CI (``CI`` set) the tests that need the server then FAIL, so a green CI
can never mean "nothing ran"; on a developer's machine they are skipped with
the reason.
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
SCRIPT = ROOT / "scripts" / "fhir_server.py"
TIMINGS: dict[str, float] = {}


def load_script() -> ModuleType:
    """scripts/ is not a package: import scripts/fhir_server.py by path, once."""
    name = "ixa_fhir_server"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]


fhir_server_script = load_script()


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "integration: needs the local FHIR server (scripts/fhir_server.py); fails under CI when it cannot be "
        "installed, skipped elsewhere",
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        parts = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in TIMINGS.items())
        terminalreporter.write_line(f"local FHIR server: {parts}")


@pytest.fixture(scope="session")
def fhir_tools() -> ModuleType:
    """scripts/fhir_server.py as a module: render(), read_order(), load_patients(), request()..."""
    return fhir_server_script


@pytest.fixture(name="in_ci", scope="session")
def in_ci_fixture() -> bool:
    return in_ci()


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[Any]:
    """A fresh server on 127.0.0.1 (base_url, token, pid); stopped at the end of the session."""
    fs = fhir_server_script
    began = time.monotonic()
    try:
        fs.install()
        TIMINGS["install"] = time.monotonic() - began
        started = time.monotonic()
        server = fs.start()
        TIMINGS["start"] = time.monotonic() - started
    except fs.FhirServerError as exc:
        message = f"local FHIR server unavailable: {exc}"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(f"{message} (under CI=true this fails)")
    try:
        yield server
    finally:
        fs.stop(server)


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
