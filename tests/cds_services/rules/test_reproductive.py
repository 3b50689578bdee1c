from __future__ import annotations

from cds_services.rules.reproductive import breastfeeding, pregnancy
from fhir_mappings.facts import Evidence
from tests.cds_services.rules.conftest import ago, evidence, make_facts, only
from tests.support import markdown_text


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


def test_the_pregnancy_card_names_the_newest_evidence_and_the_labels_contraception_periods(kb):
    """Label §5/§8.1: fetal harm; §8.3: contraception for 7 months after the last dose (females) and 4 months
    (males with female partners); the pregnancy test that clears the card is the one of ixabepilone.md."""
    older = Evidence(label="Pregnancy (SNOMED 77386006)", date=ago(60), ref="Condition/preg-1")
    newer = Evidence(label="hCG positive (LOINC 2106-3)", date=ago(3), ref="Observation/hcg-1")
    undated = Evidence(label="Pregnancy status: pregnant", date=None, ref=None)
    finding = only(list(pregnancy(make_facts(pregnancy=(older, newer, undated)), kb)), "pregnancy")
    assert finding.summary == ("Pregnancy: hCG positive (LOINC 2106-3) 2026-11-22: ixabepilone contraindicated "
                               "(embryo-fetal toxicity)")
    lines = markdown_text(finding.detail).splitlines()
    assert lines[:3] == ["- **Pregnancy (SNOMED 77386006)**, 2026-09-26, Condition/preg-1",
                         "- **hCG positive (LOINC 2106-3)**, 2026-11-22, Observation/hcg-1",
                         "- **Pregnancy status: pregnant**, date unknown"]
    assert ("**Contraception:** females of reproductive potential: effective contraception during treatment and for "
            "7 months after the last dose; males with female partners: for 4 months after the last dose") in lines[5]
    assert "IXEMPRA can cause fetal harm [L §5; §8.1]" in lines[4]
    assert lines[-1].startswith("**What to do:** confirm pregnancy status (a negative test within ")
    undated_only = only(list(pregnancy(make_facts(pregnancy=(undated,)), kb)), "pregnancy")
    assert undated_only.summary.startswith("Pregnancy: Pregnancy status: pregnant (date unknown): ")


def test_the_breastfeeding_card_quotes_two_weeks_after_the_last_dose(kb):
    """Label §8.2: do not breastfeed during treatment and for 2 weeks after the last dose."""
    finding = only(list(breastfeeding(make_facts(breastfeeding=(evidence("Currently breastfeeding", days=2),)), kb)),
                   "breastfeeding")
    assert finding.summary == "Breastfeeding recorded: stop during ixabepilone and for 2 weeks after the last dose"
    assert finding.detail.splitlines()[0] == "- **Currently breastfeeding**, 2026-11-23, Condition/c-1"
    assert "advise not to breastfeed during treatment and for 2 weeks after the last dose [L §8.2" in finding.detail
