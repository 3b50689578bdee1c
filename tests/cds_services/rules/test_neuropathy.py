from __future__ import annotations

from cds_services.rules.neuropathy import neuropathy_risk
from tests.cds_services.rules.conftest import evidence, make_facts, only


def test_diabetes(kb):
    finding = only(list(neuropathy_risk(make_facts(diabetes=(evidence("Type 2 diabetes mellitus"),)), kb)), "neuropathy-risk")
    assert finding.indicator == "info" and "Diabetes" in finding.summary
    assert finding.section == "§5.1 Peripheral neuropathy"


def test_both_conditions_one_card(kb):
    facts = make_facts(diabetes=(evidence("Diabetes mellitus"),), neuropathy=(evidence("Polyneuropathy"),))
    finding = only(list(neuropathy_risk(facts, kb)), "neuropathy-risk")
    assert finding.summary.startswith("Peripheral neuropathy and diabetes")


def test_none(kb):
    assert list(neuropathy_risk(make_facts(), kb)) == []


def test_the_card_lists_the_records_and_quotes_the_label_on_risk_and_dose_changes(kb):
    """Label §5.1: diabetes mellitus or existing peripheral neuropathy, higher risk of severe neuropathy;
    §2.2: grade 2 for >= 7 days or grade 3 for < 7 days, reduce by 20%; grade 3 for >= 7 days or disabling,
    discontinue."""
    facts = make_facts(neuropathy=(evidence("Polyneuropathy", days=40, code="42345000"),),
                       diabetes=(evidence("Type 2 diabetes mellitus", days=400),))
    finding = only(list(neuropathy_risk(facts, kb)), "neuropathy-risk")
    assert finding.summary == "Peripheral neuropathy and diabetes on record: higher risk of severe ixabepilone neuropathy"
    assert finding.detail.splitlines() == [
        "- **Polyneuropathy**, 2026-10-16 (40 d ago), code 42345000, Condition/c-1",
        "- **Type 2 diabetes mellitus**, 2025-10-21 (400 d ago), Condition/c-1",
        "",
        "**Label:** patients with diabetes mellitus or existing peripheral neuropathy may be at higher risk of "
        "severe neuropathy [L §5.1]. Grade 2 neuropathy for ≥ 7 days or grade 3 for < 7 days: reduce the dose "
        "by 20%; grade 3 for ≥ 7 days or disabling: discontinue [L §2.2].",
        "",
        "**What to do:** grade neuropathy at each visit.",
    ]
    only_neuropathy = make_facts(neuropathy=(evidence("Polyneuropathy"),))
    assert only(list(neuropathy_risk(only_neuropathy, kb)), "neuropathy-risk").summary.startswith(
        "Peripheral neuropathy on record: ")
