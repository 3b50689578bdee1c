from __future__ import annotations

from cds_services.rules.reproductive import breastfeeding, pregnancy
from tests.cds_services.rules.conftest import evidence, make_facts, only


def test_pregnancy_is_critical_with_contraception_advice(kb):
    facts = make_facts(pregnancy=(evidence("Pregnancy (SNOMED 77386006)", days=30),))
    finding = only(list(pregnancy(facts, kb)), "pregnancy")
    assert finding.indicator == "critical"
    assert "7 months" in finding.detail and "4 months" in finding.detail
    assert finding.suggestions[0].actions[0].resource_id == "MedicationRequest/ixa-1"


def test_breastfeeding_is_a_warning_with_two_weeks(kb):
    facts = make_facts(breastfeeding=(evidence("Currently breastfeeding (LOINC LA29252-6)", days=2),))
    finding = only(list(breastfeeding(facts, kb)), "breastfeeding")
    assert finding.indicator == "warning"
    assert "2 weeks" in finding.summary


def test_no_evidence_no_card(kb):
    facts = make_facts()
    assert list(pregnancy(facts, kb)) == [] and list(breastfeeding(facts, kb)) == []
