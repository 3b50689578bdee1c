"""JSON Schemas (draft 2020-12) of the CDS Hooks 2.0 messages, and their loader.

The schemas are written from the specification, not from our code, so a test
that validates a real response against them catches the service drifting from
the spec (a 140-character summary, a ``null`` detail, suggestions without
``selectionBehavior``...). ``openapi.json`` embeds the same schemas; it is
built by :mod:`cds_services.schemas.openapi` and checked against them in
tests/cds_services/test_schemas.py.
"""
from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jsonschema is a test dependency: GET /openapi.json must not need it
    from jsonschema import Draft202012Validator

SCHEMA_DIR = Path(__file__).resolve().parent

# name -> file; the four message schemas, then the service's OpenAPI document.
SCHEMA_FILES: dict[str, str] = {
    "discovery_response": "discovery_response.schema.json",
    "service_response": "service_response.schema.json",
    "feedback_request": "feedback_request.schema.json",
    "service_request": "service_request.schema.json",
}
OPENAPI_FILE = "openapi.json"


def _file_for(name: str) -> str:
    """Accept ``service_response``, ``service_response.schema.json`` or ``openapi(.json)``."""
    stem = name.removesuffix(".json").removesuffix(".schema")
    if stem == "openapi":
        return OPENAPI_FILE
    try:
        return SCHEMA_FILES[stem]
    except KeyError:
        known = ", ".join([*SCHEMA_FILES, "openapi"])
        raise KeyError(f"no schema named {name!r}; known: {known}") from None


@cache
def _read(filename: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SCHEMA_DIR / filename).read_text(encoding="utf-8"))
    return document


def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema (or ``"openapi"`` document); a fresh copy, safe to mutate."""
    return copy.deepcopy(_read(_file_for(name)))


@cache
def validator(name: str) -> Draft202012Validator:
    """A cached validator for one message schema, with format checking on.

    Formats are also spelled out as ``pattern``s in the schemas, so the checks
    hold even where the optional format libraries (rfc3339-validator, rfc3987)
    are not installed.
    """
    from jsonschema import Draft202012Validator  # noqa: PLC0415 (a test dependency: see TYPE_CHECKING above)

    filename = _file_for(name)
    if filename == OPENAPI_FILE:
        raise ValueError("openapi.json is an OpenAPI document, not a JSON Schema; validate a message schema")
    schema = _read(filename)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(name: str, instance: Any) -> list[str]:
    """Every violation as ``"path: message"`` (empty when valid), for readable test failures."""
    found = sorted(validator(name).iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    return [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in found]
