"""The benchmark harness: its patients are valid FHIR R4 of the size asked for, and wrk's line is read.

That every bench module imports is the gate's job (mypy checks bench/ and resolves every import), not a
test's: a test that only imports a module asserts nothing it does.

No timing here: speed is measured by ``python bench/run.py``, never asserted
in the suite (a loaded CI machine would make such a test flaky).
"""
from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B import get_fhir_model_class

from bench.patients import (
    LAB_PANEL,
    PREFETCH_KEYS,
    UCUM,
    generate_history_heavy,
    generate_record,
    hook_request,
)

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize("size", [1, 10, 100, 200, 1000])
def test_record_has_exactly_the_requested_number_of_resources(size):
    record = generate_record(size, now=NOW)
    assert record.size == size == len(record.all_resources())
    assert len({(r["resourceType"], r["id"]) for r in record.all_resources()}) == size


def test_main_scenario_patient_is_realistic():
    by_key = generate_record(200, now=NOW).by_key
    assert len(by_key["medicationRequests"]) == 20
    assert len({r["medicationCodeableConcept"]["coding"][0]["code"] for r in by_key["medicationRequests"]}) == 20
    labs = Counter(r["code"]["coding"][0]["code"] for r in by_key["labs"])
    assert set(labs) == {loinc for loinc, *_ in LAB_PANEL}
    assert min(labs.values()) >= 19  # about 20 weekly draws of every analyte
    for obs in by_key["labs"] + by_key["vitals"]:
        assert obs["valueQuantity"]["system"] == UCUM
        assert obs["valueQuantity"]["code"] == obs["valueQuantity"]["unit"]
        assert obs["effectiveDateTime"] < NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert by_key["conditions"] and by_key["allergies"]


def test_every_generated_resource_validates_as_fhir_r4():
    record = generate_record(200, now=NOW)
    body = hook_request(record)
    drafts = [entry["resource"] for entry in body["context"]["draftOrders"]["entry"]]
    for resource in record.all_resources() + drafts:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    for key in PREFETCH_KEYS:
        value = body["prefetch"][key]
        get_fhir_model_class(value["resourceType"]).model_validate(value)


def test_request_without_prefetch_carries_fhir_server_and_token():
    record = generate_record(50, now=NOW)
    body = hook_request(record, prefetch=False, fhir_server="http://127.0.0.1:9/fhir")
    assert "prefetch" not in body
    assert body["fhirServer"] == "http://127.0.0.1:9/fhir"
    assert body["fhirAuthorization"]["patient"] == record.patient_id
    json.dumps(body)  # serialisable as sent


def test_generator_is_deterministic_for_a_seed():
    assert generate_record(300, seed=7, now=NOW) == generate_record(300, seed=7, now=NOW)
    assert generate_record(300, seed=7, now=NOW) != generate_record(300, seed=8, now=NOW)


def test_history_heavy_patient_is_mostly_past_and_valid_r4():
    record = generate_history_heavy(200, now=NOW)
    assert record.size == 200 == len({(r["resourceType"], r["id"]) for r in record.all_resources()})
    meds = record.by_key["medicationRequests"]
    ended = [m for m in meds if m["status"] in ("stopped", "completed")]
    resolved = [c for c in record.by_key["conditions"] if c["clinicalStatus"]["coding"][0]["code"] == "resolved"]
    assert len(ended) == 40 and len(resolved) == 20 and len(record.by_key["labs"]) >= 80
    for resource in record.all_resources():
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_wrk_result_line_is_parsed(monkeypatch):
    """The Lua done() hook prints one JSON line; the harness reads only that line."""
    import subprocess

    from bench import wrk

    line = ('BENCH {"requests": 400, "duration_us": 2000000, "socket_errors": 1, "status_errors": 2, '
            '"p50_us": 2500, "p95_us": 4000, "p99_us": 9000, "mean_us": 2700.5, "max_us": 12000}')
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "Running...\n" + line, ""))
    result = wrk._run_wrk("/usr/bin/wrk", 1, "/x", b"{}", 8, 2)
    assert result == {"generator": "wrk", "clients": 8, "requests": 400, "errors": 3, "elapsed_s": 2.0,
                      "rps": 199.0, "p50_ms": 2.5, "p95_ms": 4.0, "p99_ms": 9.0, "mean_ms": 2.7, "max_ms": 12.0}
