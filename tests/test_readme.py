"""The README's examples and contracts are the code's: they cannot drift apart silently."""
from __future__ import annotations

import json
import re
from datetime import UTC
from pathlib import Path

from cds_services.security.audit import FIELDS
from cds_services.security.clients import load_trusted_clients

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def test_trusted_clients_example_loads_through_the_real_loader():
    (example,) = re.findall(r"```json\n(.*?)```", section("Security"), flags=re.DOTALL)
    clients = load_trusted_clients(example)
    client = clients.get("https://ehr.hospital.example/cds-client")
    assert client is not None and client.tenants == ("hospital-main",)
    assert client.fhir_servers == ("https://ehr.hospital.example/fhir/R4",)


def test_audit_table_lists_exactly_the_audit_fields():
    rows = re.findall(r"^\| (`[^|]+`) \|", section("Security"), flags=re.MULTILINE)
    documented = {name for row in rows for name in re.findall(r"`([a-z_]+)`", row)}
    assert documented == set(FIELDS)


def test_audit_example_line_uses_only_documented_fields():
    line = re.search(r"Example: `(\{.*?\})`", section("Security")).group(1)
    record = json.loads(line)
    assert set(record) - {"level", "logger"} <= set(FIELDS)


def test_every_rule_code_is_in_the_table_and_has_a_paragraph():
    from cds_services.rules import RULES, UNAVAILABLE

    table = section("Rule codes")
    for code in [r.code for r in RULES] + [UNAVAILABLE]:
        assert f"| `{code}` |" in table, code
        assert f"**`{code}`**" in table, code


def test_every_cds_setting_is_documented():
    from cds_services.config import ENV_VARIABLES

    configuration = section("Configuration (environment, read and checked at start; a bad value stops the service)")
    missing = [name for name in ENV_VARIABLES if f"`{name}`" not in configuration and name not in configuration]
    assert missing == []


def test_what_is_read_table_is_the_code_s_list_of_elements():
    from fhir_mappings.reading import READ_ELEMENTS

    rows = dict(re.findall(r"^\| (\w+) \| (`.*`) \|$", section("Reading real-world FHIR"), flags=re.MULTILINE))
    assert {t: tuple(re.findall(r"`(\w+)`", r)) for t, r in rows.items()} == READ_ELEMENTS


def test_unit_table_lists_every_spelling_the_code_reads():
    from fhir_mappings.units import UNIT_TABLE

    text = section("Reading real-world FHIR")
    for spellings in UNIT_TABLE.values():
        for s in spellings:
            assert f"`{s.spelling}`" in text, s.spelling


def test_the_prefetch_keys_are_the_kinds_of_data_the_facts_know():
    from cds_services.catalog import prefetch_templates
    from fhir_mappings.facts import DATA_KINDS

    assert tuple(prefetch_templates()) == DATA_KINDS
    assert all(f"`{key}`" in section("Prefetch and errors") for key in DATA_KINDS)


def test_the_analytics_json_fields_named_are_the_reports():
    from datetime import datetime

    from cds_services.analytics.report import build_report

    now = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    card = {"served_at": now, "service_id": "ixabepilone-order-sign", "hook": "order-sign", "rule_code": "platelets-low",
            "indicator": "critical", "card_uuid": "c-1", "suggestion_uuids": [], "silent": False}
    document = build_report([card], [], now=now, since_days=30, rule_display=str, reason_display=str)
    described = re.search(r"answers `\{(.*?)\}`", section("Override analytics and silent mode")).group(1)
    rule_fields = re.search(r"rules: \[\{(.*?)\}\]", described).group(1)
    top_fields = re.sub(r"rules: \[\{.*?\}\]", "rules", described)
    assert {f.strip() for f in top_fields.split(",")} == set(document)
    assert {f.strip() for f in rule_fields.split(",")} == set(document["rules"][0])
