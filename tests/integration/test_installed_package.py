"""`pip install .` gives a working service: the wheel holds the service and its data, nothing else,
and, installed into a fresh venv with its runtime dependencies only, serves the README's endpoints.

The wheel is built from a copy of this tree (``built_wheel``), installed into
a venv of its own (``installed_package``) and run by that venv's gunicorn
outside the checkout (``installed_service``): a module or data file missing
from the package, or a dependency the package forgot to declare, fails here
even though the checkout itself has it.
"""
from __future__ import annotations

import json
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest
import requests
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import rule_codes

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
# Token forging for tests (``alg: none``, HMAC with a public key): never on a server.
TEST_HELPER = "cds_services/security/testing.py"


def names_in(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(line).name) for line in requirements}


# ---------------------------------------------------------------- the wheel


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if ".dist-info/" not in name}


def test_wheel_holds_app_and_both_packages_with_their_data_files(built_wheel):
    files = wheel_files(built_wheel)
    assert {name.split("/")[0] for name in files} == {"app.py", "cds_services", "fhir_mappings"}
    # The data the service reads at start: the label knowledge, the code lists and drug table, the
    # OpenAPI document and the CDS Hooks message schemas.
    assert {
        "cds_services/knowledge/ixabepilone.json",
        "fhir_mappings/data/codes.json",
        "fhir_mappings/data/drugs.json",
        "cds_services/schemas/openapi.json",
        "cds_services/schemas/service_request.schema.json",
        "cds_services/schemas/service_response.schema.json",
    } <= files
    # Every file of the two packages in the tree is shipped (a new data file needs a package-data
    # entry), but the test-only helper.
    in_tree = {
        path.relative_to(ROOT).as_posix()
        for package in ("cds_services", "fhir_mappings")
        for path in (ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert files == (in_tree - {TEST_HELPER}) | {"app.py"}


def test_wheel_leaves_out_tests_bench_scripts_samples_and_the_token_forger(built_wheel):
    files = wheel_files(built_wheel)
    assert TEST_HELPER not in files
    assert not [name for name in files if name.split("/")[0] in ("tests", "bench", "scripts", "samples", "docs")]


def test_wheel_requires_the_runtime_dependencies_and_puts_test_tools_behind_extras(built_wheel):
    with zipfile.ZipFile(built_wheel) as archive:
        (metadata_name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(metadata_name).decode()
    required = [line.removeprefix("Requires-Dist: ") for line in metadata.splitlines() if line.startswith("Requires-Dist: ")]
    unconditional = {canonicalize_name(Requirement(r).name) for r in required if Requirement(r).marker is None}
    assert unconditional == {
        "flask", "fhir-resources", "requests", "sqlalchemy", "gunicorn", "pyjwt", "cryptography", "psycopg",
        "orjson", "pysimdjson",
    }
    assert "Requires-Python: >=3.11" in metadata.splitlines()


# ---------------------------------------------------------------- installed into a fresh venv


def test_installed_venv_imports_the_service_from_site_packages_with_runtime_dependencies_only(
    installed_package, tmp_path
):
    probe = (
        "import importlib.metadata as m, importlib.util as u, json, app, cds_services, fhir_mappings;"
        "print(json.dumps({'files': [app.__file__, cds_services.__file__, fhir_mappings.__file__],"
        " 'helper': u.find_spec('cds_services.security.testing') is not None,"
        " 'installed': sorted(d.metadata['Name'] for d in m.distributions())}))"
    )
    done = subprocess.run(
        [str(installed_package / "bin" / "python"), "-I", "-c", probe],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    site = (installed_package / "lib").resolve()
    assert all(Path(f).resolve().is_relative_to(site) for f in found["files"]), found["files"]
    assert found["helper"] is False
    installed = {canonicalize_name(name) for name in found["installed"]}
    test_only = names_in(PROJECT["optional-dependencies"]["test"]) - names_in(PROJECT["dependencies"])
    assert installed & test_only == set()
    assert names_in(PROJECT["dependencies"]) <= installed


def test_installed_service_answers_health_and_discovery(installed_service):
    health = requests.get(f"{installed_service.base_url}/healthz", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ok"

    discovery = requests.get(f"{installed_service.base_url}/cds-services", timeout=30)
    assert discovery.status_code == 200, installed_service.log()
    services = {service["id"]: service["hook"] for service in discovery.json()["services"]}
    assert services == {"ixabepilone-order-select": "order-select", "ixabepilone-order-sign": "order-sign"}


def test_installed_service_checks_the_readme_sample_order(installed_service):
    """The README's sample (latest platelets 80,000/mm3) gets its critical platelets-low card: the
    knowledge file, code lists and drug table were found inside the installed package."""
    body = json.loads((ROOT / "samples" / "order-sign-platelets-low.json").read_text(encoding="utf-8"))
    response = requests.post(
        f"{installed_service.base_url}/cds-services/ixabepilone-order-sign", json=body, timeout=60
    )
    assert response.status_code == 200, installed_service.log()
    cards = response.json()["cards"]
    assert "platelets-low" in rule_codes(response.json())
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == "platelets-low"]
    assert card["indicator"] == "critical"


def test_installed_service_serves_its_openapi_document(installed_service):
    response = requests.get(f"{installed_service.base_url}/openapi.json", timeout=30)
    assert response.status_code == 200, response.text[:500]
    assert response.json()["openapi"].startswith("3.1")
