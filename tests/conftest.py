"""Shared fixtures: an app per test on its own SQLite file and a fixed clock,
and builders that load realistic FHIR request files."""
from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from cds_services.runtime import EXTENSION

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SAMPLES = ROOT / "samples"

# The sample requests' labs were drawn on 2026-11-24; "now" is the next day.
FIXED_NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
TEST_FHIR_SERVER = "https://ehr.example.org/fhir"


def load_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@pytest.fixture
def now() -> datetime:
    return FIXED_NOW


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Build apps on a per-test database; closed at teardown."""
    apps = []

    def _make(config: dict[str, Any] | None = None, **kwargs: Any):
        settings = {
            "database_url": f"sqlite:///{tmp_path}/feedback.sqlite3",
            # The HTTP tests of the protocol run without JWTs; the security
            # tests turn authentication on explicitly.
            "allow_unauthenticated": True,
            # The test client calls http://localhost; the security tests' tokens name it in aud.
            "public_base_url": "http://localhost",
            "fhir_servers": (TEST_FHIR_SERVER,),
        }
        settings.update(config or {})
        kwargs.setdefault("environ", {})
        kwargs.setdefault("clock", lambda: FIXED_NOW)
        application = create_app(settings, **kwargs)
        application.testing = True
        apps.append(application)
        return application

    yield _make
    for application in apps:
        application.extensions[EXTENSION].close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def sample_request() -> dict[str, Any]:
    """The README's sample order-sign request (latest platelets 80,000/mm3)."""
    return load_json(SAMPLES / "order-sign-platelets-low.json")


@pytest.fixture
def hook_request(sample_request) -> Callable[..., dict[str, Any]]:
    """A copy of the sample request, with the hook and prefetch changed as asked."""

    def _build(hook: str = "order-sign", drop_prefetch: tuple[str, ...] = (), **prefetch: Any) -> dict[str, Any]:
        body = copy.deepcopy(sample_request)
        body["hook"] = hook
        if hook == "order-select":
            body["context"]["selections"] = ["MedicationRequest/draft-ixa-1"]
        for key in drop_prefetch:
            body["prefetch"].pop(key, None)
        body["prefetch"].update(prefetch)
        return body

    return _build
