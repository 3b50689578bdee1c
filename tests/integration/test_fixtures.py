"""The test patients are valid FHIR R4, self-consistent and documented; the date placeholders render.

These need no server: a broken fixture should fail here, with the file named,
before it fails somewhere deep inside an integration test.
"""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

ROOT = Path(__file__).resolve().parent.parent.parent
PATIENTS = ROOT / "tests" / "fixtures" / "patients"
KNOWLEDGE = ROOT / "cds_services" / "knowledge" / "ixabepilone.json"
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    return json.loads((PATIENTS / "expected.json").read_text(encoding="utf-8"))


def bundle_ids() -> list[str]:
    """Patient bundles: every JSON file but the draft orders and expected.json."""
    return sorted(
        p.stem for p in PATIENTS.glob("*.json") if not p.name.endswith(".order.json") and p.name != "expected.json"
    )


@pytest.fixture(scope="module")
def tools(fhir_tools):
    return fhir_tools


def test_loader_loads_the_same_files(tools):
    assert [p.stem for p in tools.bundle_paths(PATIENTS)] == bundle_ids()


@pytest.mark.parametrize(
    ("placeholder", "rendered"),
    [
        ("{{now}}", "2026-11-25T15:00:00Z"),
        ("{{now-2d}}", "2026-11-23T15:00:00Z"),
        ("{{now-7d}}", "2026-11-18T15:00:00Z"),
        ("{{now+3h}}", "2026-11-25T18:00:00Z"),
        ("{{now-90m}}", "2026-11-25T13:30:00Z"),
        ("{{now-30d:date}}", "2026-10-26"),
        ("{{now:date}}", "2026-11-25"),
    ],
)
def test_placeholders_render_relative_to_now(tools, placeholder, rendered):
    assert tools.render({"a": [{"b": placeholder}]}, NOW) == {"a": [{"b": rendered}]}


def test_other_values_are_left_alone(tools):
    value = {"birthDate": "1968-04-12", "n": 80, "ok": True, "text": "{not a placeholder}", "none": None}
    assert tools.render(value, NOW) == value


@pytest.mark.parametrize("bad", ["{{now-2}}", "{{now-2w}}", "{{today}}", "{{now-2d}} "])
def test_unknown_placeholder_is_an_error(tools, bad):
    with pytest.raises(ValueError, match="placeholder"):
        tools.render({"effectiveDateTime": bad}, NOW)


def test_render_keeps_the_stored_file_unchanged(tools):
    raw = json.loads((PATIENTS / "ixa-clean.json").read_text())
    tools.render(raw, NOW)
    assert "{{now-1d}}" in json.dumps(raw)


@pytest.mark.parametrize("patient_id", bundle_ids())
def test_bundle_is_a_valid_r4_transaction_for_one_patient(tools, patient_id):
    bundle = tools.read_bundle(PATIENTS / f"{patient_id}.json", NOW)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    get_fhir_model_class("Bundle").model_validate(bundle)
    first = bundle["entry"][0]["resource"]
    assert (first["resourceType"], first["id"]) == ("Patient", patient_id)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        where = f"{resource['resourceType']}/{resource['id']}"
        assert entry["request"] == {"method": "PUT", "url": where}
        assert resource["id"].startswith(patient_id), f"{where}: ids start with the patient id, unique on the server"
        assert len(resource["id"]) <= 64 and re.fullmatch(r"[A-Za-z0-9\-.]+", resource["id"]), where
        owner = resource.get("subject") or resource.get("patient")
        if resource["resourceType"] not in ("Patient", "Medication"):
            assert owner == {"reference": f"Patient/{patient_id}"}, where
        assert "{{" not in json.dumps(resource), where


# Drafts shaped as real clients send them, not valid R4 on purpose (README "Reading real-world FHIR").
CLIENT_SHAPED = {"ixa-sandbox-order"}
# Patients already on ixabepilone whose draft is another drug (issue 12 item 6): the record holds the regimen.
ALREADY_ON_IXABEPILONE = {"ixa-on-regimen-clarithromycin"}
IXEMPRA_15 = {"system": RXNORM, "code": "1726276", "display": "ixabepilone 15 MG Injection"}


@pytest.mark.parametrize("patient_id", bundle_ids())
def test_draft_order_is_an_ixabepilone_draft_for_the_patient(tools, patient_id):
    order = tools.read_order(patient_id, NOW)
    if patient_id in CLIENT_SHAPED:
        assert isinstance(order["category"], dict) and "intent" not in order
        order = dict(order, category=[order["category"]], intent="order", dosageInstruction=[
            dict(d, doseAndRate=[d["doseAndRate"]]) for d in order["dosageInstruction"]])
    get_fhir_model_class("MedicationRequest").model_validate(order)
    assert (order["status"], order["intent"]) == ("draft", "order")
    assert order["subject"] == {"reference": f"Patient/{patient_id}"}
    if patient_id in ALREADY_ON_IXABEPILONE:
        bundle = tools.read_bundle(PATIENTS / f"{patient_id}.json", NOW)
        regimen = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest"
                   and IXEMPRA_15 in e["resource"]["medicationCodeableConcept"]["coding"]]
        assert [r["status"] for r in regimen] == ["active"] and IXEMPRA_15 not in order["medicationCodeableConcept"]["coding"]
    else:
        assert IXEMPRA_15 in order["medicationCodeableConcept"]["coding"]
    dose = order["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    assert dose["system"] == "http://unitsofmeasure.org" and dose["code"] in ("mg/m2", "mg")
    assert order["authoredOn"] == "2026-11-25T15:00:00Z"


def test_expected_lists_every_bundle_and_only_known_rules(expected):
    rules = set(json.loads(KNOWLEDGE.read_text(encoding="utf-8"))["rules"])
    assert expected["version"] and expected["source"]
    assert sorted(expected["patients"]) == sorted(bundle_ids())
    for patient_id, entry in expected["patients"].items():
        assert set(entry["rules"]) <= rules, patient_id
        assert len(entry["rules"]) == len(set(entry["rules"])), patient_id
        assert entry["story"] and entry["basis"], patient_id
        # each expected card names the label section (or [S], [F]) that makes it right
        assert sorted(entry.get("why", {})) == sorted(entry["rules"]), patient_id
        for rule, why in entry.get("why", {}).items():
            assert re.search(r"L §\d|L Boxed warning|\[S\]|\[F\]", why), (patient_id, rule)


def test_readme_table_matches_expected(expected):
    rows = {}
    for line in (PATIENTS / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `ixa-") and len(cells) == 4:
            rows[cells[0].strip("`")] = re.findall(r"`([a-z0-9-]+)`", cells[2])
    assert rows == {pid: entry["rules"] for pid, entry in expected["patients"].items()}
