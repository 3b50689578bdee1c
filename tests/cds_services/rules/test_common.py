"""The helpers every card's text goes through (cds_services/rules/common.py, assess.py): what a clinician reads.

Dates are against the rules' fixed clock, 2026-11-25T15:00Z (conftest NOW).
"""
from __future__ import annotations

import dataclasses

from cds_services.rules.common import evidence_line, newest
from cds_services.rules.interactions import cyp3a4_strong_inhibitor
from fhir_mappings.facts import Evidence
from tests.cds_services.rules.conftest import add_drafts, add_meds, ago, drug, make_facts, only
from tests.support import markdown_text


def test_an_evidence_line_says_what_when_how_long_ago_which_code_and_which_resource():
    facts = make_facts()
    radiotherapy = Evidence(label="Radiotherapy", date=ago(20), ref="Procedure/p1", code="108290001")
    assert evidence_line(facts, radiotherapy) == "- **Radiotherapy**, 2026-11-05 (20 d ago), code 108290001, Procedure/p1"
    assert evidence_line(facts, Evidence(label="Radiotherapy", date=ago(hours=3))) == (
        "- **Radiotherapy**, 2026-11-25 (today)")
    assert evidence_line(facts, Evidence(label="Radiotherapy", date=None, ref="Procedure/p2")) == (
        "- **Radiotherapy**, date unknown, Procedure/p2")


def test_the_newest_dated_record_is_the_one_shown():
    old, recent, undated = (Evidence(label="a", date=ago(30)), Evidence(label="b", date=ago(2)),
                            Evidence(label="c", date=None))
    assert newest([old, undated, recent]) is recent
    assert newest([recent, old]) is recent
    assert newest([undated]) is None
    assert newest([]) is None


def test_a_local_form_of_an_inhibitor_is_named_as_not_counted_and_a_systemic_one_counts(kb):
    """Ketoconazole shampoo or cream gives no systemic exposure expected (no source gives a systemic effect):
    named on the card as not counted, with how the form was decided; oral itraconazole beside it counts."""
    shampoo = dataclasses.replace(drug("ketoconazole", display="ketoconazole 2% shampoo"), exposure="local",
                                  exposure_basis="dose form Shampoo")
    facts = add_meds(make_facts(), shampoo, drug("itraconazole"))
    detail = markdown_text(only(list(cyp3a4_strong_inhibitor(facts, kb)), "cyp3a4-strong-inhibitor").detail)
    assert ("Not counted (local use, no systemic exposure expected; no source gives a systemic effect):\n"
            "- **ketoconazole 2% shampoo**, active order (active), 2026-11-15, MedicationRequest/ketoconazole-request: "
            "dose form Shampoo") in detail
    assert "**itraconazole**" in detail
    only_local = add_meds(make_facts(), shampoo)
    assert list(cyp3a4_strong_inhibitor(only_local, kb)) == []
    # A patient already on ixabepilone: the drafts are what is checked, and a local draft is named the same way.
    regimen = dataclasses.replace(drug("ixabepilone"), status="active")
    drafted = add_drafts(make_facts(orders=(), draft_orders=(), medications=(regimen,)),
                         dataclasses.replace(shampoo, origin="draft", status="draft"), drug("clarithromycin", origin="draft"))
    detail = markdown_text(only(list(cyp3a4_strong_inhibitor(drafted, kb)), "cyp3a4-strong-inhibitor").detail)
    assert "Not counted (local use" in detail and "**ketoconazole 2% shampoo**, draft order" in detail



def test_cancelling_names_each_ixabepilone_draft_and_says_order_or_orders(kb):
    """CDS Hooks 2.0: a "delete" action names the draft order's id; one suggestion, recommended."""
    from cds_services.rules.common import delete_orders
    from tests.cds_services.rules.conftest import ixabepilone_order

    one = ixabepilone_order()
    (suggestion,) = delete_orders(make_facts(orders=(one,)))
    assert (suggestion.label, suggestion.is_recommended) == ("Cancel the ixabepilone order", True)
    assert [(a.type, a.resource_id, a.description) for a in suggestion.actions] == [
        ("delete", "MedicationRequest/ixa-1", "Remove the draft order ixabepilone 45 MG Injection")]
    two = (one, ixabepilone_order(ref="MedicationRequest/ixa-2"), dataclasses.replace(one, ref=None))
    (suggestion,) = delete_orders(make_facts(orders=two))
    assert suggestion.label == "Cancel the ixabepilone orders"
    assert [a.resource_id for a in suggestion.actions] == ["MedicationRequest/ixa-1", "MedicationRequest/ixa-2"]
    assert delete_orders(make_facts(orders=(dataclasses.replace(one, ref=None),))) == ()


def test_a_reduction_updates_only_the_drafts_above_the_new_dose(kb):
    """Label §7: 20 mg/m2 with a strong CYP3A4 inhibitor; a draft already at 20 mg/m2 is left alone."""
    from cds_services.rules.common import reduce_orders
    from tests.cds_services.rules.conftest import ixabepilone_order

    high, at = ixabepilone_order(40), ixabepilone_order(20, ref="MedicationRequest/ixa-2")
    (suggestion,) = reduce_orders(make_facts(orders=(high, at)), 20, "strong CYP3A4 inhibitor, label §7")
    assert (suggestion.label, suggestion.is_recommended) == ("Reduce ixabepilone to 20 mg/m2", True)
    (action,) = suggestion.actions
    assert (action.type, action.description) == (
        "update", "Change ixabepilone 45 MG Injection to 20 mg/m2 (strong CYP3A4 inhibitor, label §7)")
    assert reduce_orders(make_facts(orders=(at,)), 20, "x") == ()
    assert reduce_orders(make_facts(orders=(ixabepilone_order(40, resource=False),)), 20, "x") == ()
    # 35 mg for 1.66 m2 is 21.1 mg/m2: above 20, so updated; 33 mg is 19.9 mg/m2: left alone.
    by_mg = (ixabepilone_order(mg=35), ixabepilone_order(mg=33, ref="MedicationRequest/ixa-2"))
    (suggestion,) = reduce_orders(make_facts(orders=by_mg), 20, "x", bsa=1.66)
    assert len(suggestion.actions) == 1


def test_a_lab_line_says_value_unit_date_age_resource_and_what_was_recorded():
    from cds_services.rules.common import lab_text
    from tests.cds_services.rules.conftest import lab

    facts = make_facts()
    assert lab_text(facts, lab("platelets", 80_000), whole=True) == (
        "Platelets 80,000 cells/mm3 on 2026-11-24 (1 d ago, Observation/platelets-1)")  # as recorded: not repeated
    converted = dataclasses.replace(lab("neutrophils", 1_200), raw="1.2 10*3/uL", status="preliminary",
                                    note="read as 10*3/uL")
    assert lab_text(facts, converted, whole=True) == (
        "ANC (preliminary) 1,200 cells/mm3 on 2026-11-24 (1 d ago, Observation/neutrophils-1; recorded as "
        "1.2 10\\*3/uL; read as 10*3/uL)")
    same = dataclasses.replace(lab("ast", 35.0), raw="35 U/L", ref=None, effective=ago(hours=2))
    assert lab_text(facts, same) == "AST 35 U/L on 2026-11-25 (today)"
    future = dataclasses.replace(lab("ast", 35.0), raw="35 U/L", ref=None, effective=ago(hours=-30))
    assert lab_text(facts, future) == "AST 35 U/L on 2026-11-26 (in the future)"
    bound = dataclasses.replace(lab("platelets", 50_000), comparator="<", raw="<50 10*3/uL")
    assert lab_text(facts, bound, whole=True).startswith("Platelets <50,000 cells/mm3 on 2026-11-24")
    newer = dataclasses.replace(lab("ast", None, days=0.5, problem="hemolysed"), ref="Observation/ast-2")
    with_newer = dataclasses.replace(lab("ast", 35.0), raw="35 U/L", newer_unusable=newer)
    assert lab_text(facts, with_newer) == (
        "AST 35 U/L on 2026-11-24 (1 d ago, Observation/ast-1; the newer result Observation/ast-2 of 2026-11-25 "
        "could not be used (hemolysed): this one was used)")


def test_a_bound_is_below_a_limit_only_when_the_bound_settles_it():
    """A result "<50" (FHIR Quantity.comparator) is below 100 and below 50; ">50" is not below 50 and may or may
    not be below 100 (None)."""
    from cds_services.rules.common import is_above, is_below

    assert [is_below(99, None, 100), is_below(100, None, 100)] == [True, False]
    assert [is_below(50, "<", 50), is_below(50, "<", 49), is_below(50, "<=", 51), is_below(50, "<=", 50)] == [
        True, None, True, None]
    assert [is_below(50, ">", 50), is_below(50, ">=", 49), is_below(50, ">", 100)] == [False, False, None]
    assert [is_above(101, None, 100), is_above(100, None, 100), is_above(50, ">", 50), is_above(50, ">", 60)] == [
        True, False, True, None]


def test_request_text_is_escaped_so_it_can_start_no_block_and_make_no_link():
    """GFM (CDS Hooks 2.0 card detail): a line opening with "#", ">", "-", "+", "=" or "1." starts a block; "www."
    and "user@host" autolink; control characters could open new lines. Each is neutralised, and the text still
    reads the same."""
    from cds_services.rules.common import escape_md

    assert escape_md("# Heading") == "\\# Heading"
    assert escape_md("- item") == "\\- item"
    assert escape_md("12. item") == "12\\. item"
    assert escape_md("3) item") == "3\\) item"
    assert escape_md("3.4 10*3/uL") == "3.4 10\\*3/uL"  # not a list: no space after the marker
    assert escape_md("see www.example.org") == "see www\\.example.org"
    assert escape_md("dr@example.org") == "dr\u200b@example.org"
    assert escape_md("a\nb\u2028c\x00") == "a b c"


def test_a_bound_is_above_a_limit_only_when_the_bound_settles_it():
    from cds_services.rules.common import is_above

    assert [is_above(50, ">=", 50), is_above(50, ">=", 49), is_above(50, ">=", 60)] == [None, True, None]
    assert [is_above(50, "<", 50), is_above(50, "<=", 50), is_above(50, "<", 40)] == [False, False, None]


def test_a_summary_names_three_drugs_and_counts_the_rest():
    from cds_services.rules.common import names

    assert names(["a", "b", "c"]) == "a, b, c"
    assert names(["a", "b", "c", "d", "a"]) == "a, b, c +1 more"


def test_only_warning_and_critical_cards_offer_override_reasons(kb):
    """CDS Hooks 2.0 overrideReasons: a reason to override a warning; an info card has nothing to override."""
    from cds_services.rules.neuropathy import neuropathy_risk
    from fhir_mappings.facts import Evidence as E

    info = only(list(neuropathy_risk(make_facts(diabetes=(E(label="Diabetes", date=ago(5)),)), kb)), "neuropathy-risk")
    assert info.override_reasons == ()
    warning = only(list(cyp3a4_strong_inhibitor(add_meds(make_facts(), drug("ketoconazole")), kb)),
                   "cyp3a4-strong-inhibitor")
    assert [code for code, _ in warning.override_reasons] == ["benefit-outweighs-risk", "patient-monitored", "data-outdated"]
