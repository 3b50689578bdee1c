from __future__ import annotations

import pytest

from cds_services.rules.hypersensitivity import hypersensitivity
from tests.cds_services.rules.conftest import allergy, make_facts, only


@pytest.mark.parametrize(
    "substance, indicator",
    [
        ("cremophor", "critical"),
        ("ixabepilone", "critical"),
        ("paclitaxel", "warning"),
        ("cyclosporine", "warning"),
        ("teniposide", "warning"),
        ("castor-oil", "warning"),
    ],
)
def test_indicator_per_substance(kb, substance, indicator):
    facts = make_facts(allergies=(allergy(substance),))
    finding = only(list(hypersensitivity(facts, kb)), "hypersensitivity")
    assert finding.indicator == indicator
    has_delete = any(a.type == "delete" for s in finding.suggestions for a in s.actions)
    assert has_delete is (indicator == "critical")


def test_unknown_severity_cremophor_is_treated_as_severe(kb):
    facts = make_facts(allergies=(allergy("cremophor", criticality=None),))
    assert only(list(hypersensitivity(facts, kb)), "hypersensitivity").indicator == "critical"


def test_low_criticality_cremophor_is_a_warning_and_says_why(kb):
    facts = make_facts(allergies=(allergy("cremophor", criticality="low"),))
    finding = only(list(hypersensitivity(facts, kb)), "hypersensitivity")
    assert finding.indicator == "warning"
    assert "grade 3/4" in finding.detail


def test_ixabepilone_allergy_names_corticosteroid_premedication(kb):
    finding = only(list(hypersensitivity(make_facts(allergies=(allergy("ixabepilone"),)), kb)), "hypersensitivity")
    assert "corticosteroid" in finding.summary
    assert "§2.3" in finding.section


def test_castor_oil_is_marked_as_the_projects_reading(kb):
    finding = only(list(hypersensitivity(make_facts(allergies=(allergy("castor-oil"),)), kb)), "hypersensitivity")
    assert "this project's reading" in finding.detail


def test_several_allergies_make_one_card_with_the_worst_indicator(kb):
    facts = make_facts(allergies=(allergy("paclitaxel"), allergy("cremophor")))
    findings = list(hypersensitivity(facts, kb))
    assert len(findings) == 1 and findings[0].indicator == "critical"
    assert "paclitaxel" in findings[0].detail and "Cremophor" in findings[0].summary


def test_unrelated_allergy_is_silent(kb):
    assert list(hypersensitivity(make_facts(allergies=(allergy("famotidine"),)), kb)) == []
