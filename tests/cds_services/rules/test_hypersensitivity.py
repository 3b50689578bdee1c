"""Hypersensitivity by severity [L §4; §2.3] (issue 12 item 2).

Label §4: contraindicated after "a severe (CTC grade 3/4) hypersensitivity
reaction to agents containing Cremophor EL or its derivatives". Label §2.3:
after a reaction to IXEMPRA, premedicate with a corticosteroid (dexamethasone
20 mg IV 30 minutes before). Severe: criticality high, reaction severity
severe, or anaphylaxis (ixabepilone.md, Contraindications).
"""
from __future__ import annotations

import dataclasses

import pytest

from cds_services.rules.hypersensitivity import hypersensitivity
from tests.cds_services.rules.conftest import add_drafts, allergy, drug, make_facts, only


def card(kb, substance, **fields):
    found = allergy(substance, criticality=fields.pop("criticality", None))
    found = dataclasses.replace(found, **fields)
    return only(list(hypersensitivity(make_facts(allergies=(found,)), kb)), "hypersensitivity")


def actions(finding):
    return [a for s in finding.suggestions for a in s.actions]


@pytest.mark.parametrize("substance", ["paclitaxel", "cyclosporine", "teniposide", "cremophor", "ixabepilone"])
@pytest.mark.parametrize("severe", [{"criticality": "high"}, {"severity": "severe"}, {"anaphylaxis": True}])
def test_severe_reaction_to_a_cremophor_agent_is_critical_and_cancels(kb, substance, severe):
    finding = card(kb, substance, **severe)
    assert finding.indicator == "critical"
    assert [a.type for a in actions(finding)] == ["delete"]
    assert "contraindicated" in finding.summary or "do not give" in finding.summary


@pytest.mark.parametrize("substance", ["paclitaxel", "cyclosporine", "teniposide"])
@pytest.mark.parametrize("mild", [{"criticality": "low"}, {"severity": "mild"}, {"severity": "moderate"}, {}])
def test_mild_or_unknown_reaction_to_a_cremophor_drug_is_a_warning_that_premedicates(kb, substance, mild):
    finding = card(kb, substance, **mild)
    assert finding.indicator == "warning"
    (action,) = actions(finding)
    assert action.type == "create"
    assert "premedicate with a corticosteroid" in finding.summary


def test_cremophor_of_unknown_severity_is_treated_as_severe_but_low_criticality_is_a_warning(kb):
    assert card(kb, "cremophor").indicator == "critical"  # ixabepilone.md: unknown severity treated as severe
    low = card(kb, "cremophor", criticality="low")
    assert low.indicator == "warning" and "not severe" in low.detail


@pytest.mark.parametrize("fields", [{"criticality": "low"}, {"severity": "mild"}, {}])
def test_prior_ixabepilone_reaction_not_severe_creates_dexamethasone_20_mg_iv(kb, fields):
    finding = card(kb, "ixabepilone", **fields)
    assert finding.indicator == "warning"
    assert "corticosteroid premedication (dexamethasone 20 mg IV)" in finding.summary
    (action,) = actions(finding)
    order = action.resource
    assert action.type == "create" and order["status"] == "draft" and order["intent"] == "order"
    # [L §2.3] dexamethasone 20 mg IV 30 minutes before; RxNorm 1116927 dexamethasone phosphate 4 MG/ML Injectable Solution
    assert order["medicationCodeableConcept"]["coding"][0]["code"] == "1116927"
    dosage = order["dosageInstruction"][0]
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == 20
    assert dosage["doseAndRate"][0]["doseQuantity"]["code"] == "mg"
    assert dosage["route"]["coding"][0]["code"] == "47625008"  # SNOMED Intravenous route
    assert "30 minutes before" in dosage["text"]


def test_no_card_recommends_the_opposite_of_its_summary(kb):
    for substance in ("paclitaxel", "ixabepilone", "cremophor", "castor-oil"):
        for fields in ({"criticality": "high"}, {"criticality": "low"}):
            finding = card(kb, substance, **fields)
            kinds = {a.type for a in actions(finding)}
            if finding.indicator == "critical":
                assert kinds == {"delete"} and "premedicat" not in finding.summary
            else:
                assert kinds == {"create"} and "contraindicated" not in finding.summary


def test_corticosteroid_already_ordered_is_not_suggested_again(kb):
    facts = make_facts(allergies=(allergy("ixabepilone", criticality="low"),))
    facts = add_drafts(facts, drug("dexamethasone", origin="draft", display="dexamethasone 20 mg IV"))
    finding = only(list(hypersensitivity(facts, kb)), "hypersensitivity")
    assert finding.indicator == "warning" and finding.suggestions == ()
    assert "Corticosteroid already ordered: dexamethasone 20 mg IV" in finding.detail


def test_castor_oil_stays_a_warning_marked_as_the_projects_reading(kb):
    finding = card(kb, "castor-oil", criticality="high")
    assert finding.indicator == "warning" and "this project's reading" in finding.detail


def test_several_allergies_make_one_card_with_the_worst_indicator(kb):
    facts = make_facts(allergies=(allergy("paclitaxel", criticality="low"), allergy("cremophor")))
    findings = list(hypersensitivity(facts, kb))
    assert len(findings) == 1 and findings[0].indicator == "critical"
    assert "paclitaxel" in findings[0].detail and "Cremophor" in findings[0].summary


def test_detail_says_what_made_it_severe(kb):
    finding = card(kb, "paclitaxel", criticality="low", anaphylaxis=True, reactions=("Anaphylaxis",))
    assert finding.indicator == "critical"
    assert "**severe** (anaphylaxis)" in finding.detail and "reaction: Anaphylaxis" in finding.detail


def test_unrelated_allergy_is_silent(kb):
    assert list(hypersensitivity(make_facts(allergies=(allergy("famotidine"),)), kb)) == []


@pytest.mark.parametrize(("criticality", "severity", "anaphylaxis", "graded"), [
    # ixabepilone.md, Contraindications: severe = criticality high, severity severe, or anaphylaxis
    ("high", None, False, ("severe", "criticality high")),
    (None, "severe", False, ("severe", "reaction recorded as severe")),
    (None, None, True, ("severe", "anaphylaxis")),
    ("high", "severe", True, ("severe", "criticality high, reaction recorded as severe, anaphylaxis")),
    ("low", "severe", False, ("severe", "reaction recorded as severe")),  # any severe sign wins
    ("low", None, False, ("not_severe", "criticality low")),
    (None, "mild", False, ("not_severe", "reaction recorded as mild")),
    ("unable-to-assess", "moderate", False, ("not_severe", "reaction recorded as moderate")),
    ("unable-to-assess", None, False, ("unknown", "neither criticality nor reaction severity says it was severe or mild")),
])
def test_how_severe_a_recorded_reaction_was_and_what_says_so(criticality, severity, anaphylaxis, graded):
    from cds_services.rules.hypersensitivity import severity_of

    recorded = dataclasses.replace(allergy("cremophor", criticality=criticality), severity=severity,
                                   anaphylaxis=anaphylaxis)
    assert severity_of(recorded) == graded


def test_the_premedication_suggestion_is_recommended_and_says_what_it_orders(kb):
    """Label §2.3: after a reaction to IXEMPRA, dexamethasone 20 mg IV 30 minutes before the infusion."""
    (suggestion,) = card(kb, "ixabepilone", criticality="low").suggestions
    assert suggestion.is_recommended is True
    assert suggestion.label == "Order dexamethasone 20 mg IV premedication"
    (action,) = suggestion.actions
    assert action.description.startswith("Corticosteroid premedication: dexamethasone 20 mg IV")
    assert action.description.endswith(" [L §2.3]")


def test_no_premedication_suggestion_when_the_corticosteroid_is_already_ordered(kb):
    facts = add_drafts(make_facts(allergies=(dataclasses.replace(allergy("ixabepilone", criticality="low")),)),
                       drug("dexamethasone", origin="draft", display="dexamethasone 4 MG/ML Injectable Solution"))
    assert only(list(hypersensitivity(facts, kb)), "hypersensitivity").suggestions == ()


LABEL_LINES = [
    "",
    "**Label:** IXEMPRA is contraindicated in patients with a history of a severe (CTC grade 3/4) hypersensitivity "
    "reaction to agents containing Cremophor EL or its derivatives such as polyoxyethylated castor oil [L §4]. Severe "
    "here: criticality high, a reaction recorded as severe, or anaphylaxis. A Cremophor allergy of unknown severity is "
    "treated as severe.",
    "**Premedication:** H1 and H2 antagonists 1 hour before every infusion; after a prior reaction add a corticosteroid "
    "(dexamethasone 20 mg IV, 30 minutes before the infusion, or orally 60 minutes before) [L §2.3].",
    "",
]
CANCEL = "**What to do:** do not give ixabepilone; cancel the order."
PREMEDICATE = ("**What to do:** confirm what the reaction was, and give the corticosteroid premedication with the H1 "
               "and H2 antagonists.")


@pytest.mark.parametrize(("substance", "criticality", "indicator", "summary", "reason", "what"), [
    ("cremophor", "high", "critical",
     "Severe reaction to Cremophor EL (polyoxyl castor oil): ixabepilone contraindicated (Cremophor EL)",
     "**severe** (criticality high) → critical. Contraindicated after a severe (CTC grade 3/4) hypersensitivity "
     "reaction to agents containing Cremophor EL or its derivatives such as polyoxyethylated castor oil; the IXEMPRA "
     "diluent is polyoxyl 35 castor oil. A recorded allergy of unknown severity is treated as severe "
     "(shared/clinical/ixabepilone.md). [L §4 Contraindications]", CANCEL),
    ("paclitaxel", "low", "warning",
     "Allergy to paclitaxel (Cremophor-formulated): possible Cremophor EL reaction; premedicate with a corticosteroid",
     "**not severe** (criticality low) → warning. Paclitaxel (Taxol) is formulated in Cremophor EL: a severe reaction "
     "to it is a severe reaction to an agent containing Cremophor EL [L §4]; after a mild or unknown-severity reaction "
     "the cause may have been the vehicle: premedicate with a corticosteroid (the label names it after a reaction to "
     "IXEMPRA itself [L §2.3]; after a milder reaction to another Cremophor EL agent it is "
     "shared/clinical/ixabepilone.md's reading). [L §4 Contraindications]",
     PREMEDICATE),
    ("ixabepilone", "low", "warning",
     "Prior reaction to ixabepilone: give corticosteroid premedication (dexamethasone 20 mg IV)",
     "**not severe** (criticality low) → warning. Patients who had a hypersensitivity reaction to IXEMPRA require "
     "corticosteroid premedication in addition to the H1 and H2 antagonists [L §2.3]; a severe (grade 3/4) reaction "
     "to IXEMPRA, itself formulated in Cremophor EL, is a severe reaction to an agent containing Cremophor EL [L §4]. "
     "[L §2.3 Premedication; §4]", PREMEDICATE),
    ("ixabepilone", "high", "critical",
     "Severe prior reaction to ixabepilone (criticality high): do not give (Cremophor EL contraindication)",
     "**severe** (criticality high) → critical. Patients who had a hypersensitivity reaction to IXEMPRA require "
     "corticosteroid premedication in addition to the H1 and H2 antagonists [L §2.3]; a severe (grade 3/4) reaction "
     "to IXEMPRA, itself formulated in Cremophor EL, is a severe reaction to an agent containing Cremophor EL [L §4]. "
     "[L §2.3 Premedication; §4]", CANCEL),
])
def test_the_hypersensitivity_card_line_by_line(kb, substance, criticality, indicator, summary, reason, what):
    """Label §4 (severe reaction to a Cremophor EL agent: contraindicated) and §2.3 (after a reaction to IXEMPRA:
    corticosteroid premedication); severe = criticality high, severity severe or anaphylaxis (ixabepilone.md)."""
    finding = card(kb, substance, criticality=criticality)
    assert (finding.indicator, finding.summary) == (indicator, summary)
    assert finding.detail.splitlines() == [
        f"- **Allergy to {substance}**, criticality {criticality}, reaction severity not recorded, 2025-10-21, "
        f"AllergyIntolerance/a-1: {reason}", *LABEL_LINES, what]
