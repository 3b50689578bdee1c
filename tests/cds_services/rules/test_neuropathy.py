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
