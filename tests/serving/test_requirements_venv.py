"""The README's run command in a virtual environment made from requirements.txt
alone: what the image installs, without the test dependencies this suite runs
with. GET /openapi.json answered 500 there (it imported jsonschema, a test
dependency) while every test here passed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, SAMPLES, load_json


@pytest.fixture(scope="module")
def runtime_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "-q", "-r", str(ROOT / "requirements.txt")],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    return python


def test_requirements_txt_alone_serves_every_endpoint(runtime_python, start_gunicorn, tmp_path: Path):
    server = start_gunicorn(python=runtime_python, env={
        "CDS_ALLOW_UNAUTHENTICATED": "true",  # as in the README's run command
        "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'feedback.sqlite3'}",
    })
    url = server.base_url
    assert requests.get(url + "/healthz", timeout=10).json()["status"] == "ok"
    discovery = requests.get(url + "/cds-services", timeout=10)
    assert discovery.status_code == 200 and len(discovery.json()["services"]) == 2
    openapi = requests.get(url + "/openapi.json", timeout=10)
    assert openapi.status_code == 200, server.log()
    assert openapi.json()["openapi"].startswith("3.1")
    hook = requests.post(url + "/cds-services/ixabepilone-order-sign",
                         json=load_json(SAMPLES / "order-sign-platelets-low.json"), timeout=30)
    assert hook.status_code == 200 and hook.json()["cards"]
