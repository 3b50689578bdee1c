from __future__ import annotations

import math

import pytest

from cds_services.rules.dose import dose_check, mosteller
from fhir_mappings.facts import Dose
from tests.cds_services.rules.conftest import add_meds, drug, ixabepilone_order, lab, make_facts, only, with_labs
from tests.support import markdown_text


def facts_for(order, height=180, weight=80, weight_days=3, **changes):
    facts = make_facts(orders=(order,), draft_orders=(order,), **changes)
    return with_labs(facts, height=lab("height", height, days=100), weight=lab("weight", weight, days=weight_days))


def test_mosteller():
    assert mosteller(180, 80) == 2.0
    assert math.isclose(mosteller(165, 68), 1.7654, abs_tol=1e-4)


@pytest.mark.parametrize("mg, fires", [(87.9, False), (88.0, False), (88.1, True)])  # BSA 2.0: 80 mg, +10% = 88
def test_mg_dose_ten_percent_margin(kb, mg, fires):
    findings = list(dose_check(facts_for(ixabepilone_order(mg=mg)), kb))
    assert bool(findings) is fires
    if fires:
        assert findings[0].summary == "Ixabepilone 88.1 mg > 80 mg (40 mg/m2 x 2 m2) by 10%"


@pytest.mark.parametrize("per_m2, fires", [(43.9, False), (44.0, False), (44.1, True)])
def test_mg_per_m2_ten_percent_margin(kb, per_m2, fires):
    assert bool(list(dose_check(facts_for(ixabepilone_order(mg_per_m2=per_m2)), kb))) is fires


@pytest.mark.parametrize("mg, fires", [(96.8, False), (96.9, True)])  # BSA 2.36 capped at 2.2: 88 mg, +10% = 96.8
def test_bsa_cap(kb, mg, fires):
    findings = list(dose_check(facts_for(ixabepilone_order(mg=mg), height=200, weight=100), kb))
    assert bool(findings) is fires
    if fires:
        assert "counted as 2.2 m2" in findings[0].detail


def test_bsa_exactly_at_the_cap(kb):
    # 198 cm, 88 kg: BSA exactly 2.2 m2 -> 88 mg
    assert list(dose_check(facts_for(ixabepilone_order(mg=96.8), height=198, weight=88), kb)) == []


def test_strong_inhibitor_lowers_the_label_dose(kb):
    facts = add_meds(facts_for(ixabepilone_order(mg_per_m2=40)), drug("ketoconazole"))
    finding = only(list(dose_check(facts, kb)), "dose-check")
    assert "> 20 mg/m2" in finding.summary


def test_hepatic_band_lowers_the_label_dose(kb):
    facts = with_labs(facts_for(ixabepilone_order(mg_per_m2=40)), ast=lab("ast", 150))
    assert "> 32 mg/m2" in only(list(dose_check(facts, kb)), "dose-check").summary


@pytest.mark.parametrize("days, fires", [(30, False), (31, True)])
def test_stale_weight_cannot_verify(kb, days, fires):
    findings = list(dose_check(facts_for(ixabepilone_order(mg=80), weight_days=days), kb))
    assert bool(findings) is fires
    if fires:
        assert findings[0].summary.startswith("Ixabepilone dose cannot be verified: weight 31 days old")


def test_missing_height_cannot_verify(kb):
    facts = with_labs(facts_for(ixabepilone_order(mg=80)), height=None)
    assert "no height on record" in only(list(dose_check(facts, kb)), "dose-check").summary


def test_mg_per_m2_dose_needs_no_bsa(kb):
    facts = with_labs(facts_for(ixabepilone_order(mg_per_m2=40)), height=None, weight=None)
    assert list(dose_check(facts, kb)) == []


def test_unreadable_dose(kb):
    order = ixabepilone_order(dose=Dose(raw="one vial", problem="unit 'vial' is not a mass"))
    finding = only(list(dose_check(facts_for(order), kb)), "dose-check")
    assert finding.indicator == "warning"
    assert "dose unreadable" in finding.summary and "not a mass" in finding.detail


def test_two_orders_one_card(kb):
    a = ixabepilone_order(mg=120, ref="MedicationRequest/a")
    b = ixabepilone_order(dose=None, ref="MedicationRequest/b")
    facts = with_labs(make_facts(orders=(a, b), draft_orders=(a, b)), height=lab("height", 180), weight=lab("weight", 80))
    finding = only(list(dose_check(facts, kb)), "dose-check")
    assert finding.summary == "Ixabepilone dose: 1 above the label dose, 1 cannot be verified"


def test_the_dose_card_shows_the_arithmetic_from_the_label(kb):
    """Label §2: 40 mg/m2; BSA by Mosteller, sqrt(165 cm x 68 kg / 3600) = 1.77 m2 (ixabepilone.md), so 70.6 mg,
    flagged above 77.7 mg (the project's 10%); 100 mg is 42% above. BSA over 2.2 m2 counts as 2.2 m2."""
    order = ixabepilone_order(mg=100)
    finding = only(list(dose_check(make_facts(orders=(order,), draft_orders=(order,)), kb)), "dose-check")
    assert finding.summary == "Ixabepilone 100 mg > 70.6 mg (40 mg/m2 x 1.77 m2) by 42%"
    assert finding.detail.splitlines() == [
        "- ixabepilone 45 MG Injection: **100 mg** ordered; label dose 40 mg/m2 x 1.77 m2 = 70.6 mg, flagged above "
        "77.7 mg; BSA 1.77 m2 (Mosteller; height 165 cm on 2026-08-17, weight 68 kg on 2026-11-22)",
        "",
        "**Label dose for this patient:** label dose 40 mg/m2 [L §2] → **40 mg/m2**. BSA above 2.2 m2 counts as "
        "2.2 m2 [L §2].",
        "Every dose on the order is checked (ordered and calculated, each dose line and range); the highest is "
        "reported. Orders more than 10% above the label dose are flagged (a project setting). Height and weight must "
        "be current (height 365 d, weight 30 d).",
        "",
        "**What to do:** recalculate the dose, or record why this dose is intended.",
    ]
    per_m2 = ixabepilone_order(50)
    finding = only(list(dose_check(make_facts(orders=(per_m2,), draft_orders=(per_m2,)), kb)), "dose-check")
    assert finding.summary == "Ixabepilone 50 mg/m2 > 40 mg/m2 by 25%"
    assert finding.detail.splitlines()[0] == (
        "- ixabepilone 45 MG Injection: **50 mg/m2** ordered; label dose 40 mg/m2, flagged above 44 mg/m2")


def test_why_the_bsa_could_not_be_had_is_said_per_measurement(kb):
    """ixabepilone.md: BSA from the latest height and weight; a weight older than 30 days (height: 365) makes the
    dose check "cannot verify" rather than silent."""
    import dataclasses

    from cds_services.rules.dose import bsa_for

    def why(**labs):
        return bsa_for(with_labs(make_facts(), **labs), kb)

    assert why(height=None)[0] is None and why(height=None)[2] == "no height on record"
    assert why(weight=lab("weight", None, problem="unit [lb_av] unreadable"))[2] == "weight unusable (unit [lb_av] unreadable)"
    assert why(weight=dataclasses.replace(lab("weight", 60), comparator=">", raw=">60 kg"))[2] == (
        "weight recorded only as a bound ('>60 kg')")
    assert why(weight=lab("weight", 68, days=45), height=lab("height", 165, days=400))[2] == (
        "height 400 days old (window 365 d); weight 45 days old (window 30 d)")
    assert why(weight=dataclasses.replace(lab("weight", 68), effective=None))[2] == "weight undated (window 30 d)"
    unread = dataclasses.replace(make_facts(), unavailable={"vitals": "FHIR server error (500)"})
    assert bsa_for(unread, kb) == (None, None, "height and weight could not be read (FHIR server error (500))")
    big = bsa_for(with_labs(make_facts(), height=lab("height", 190), weight=lab("weight", 120)), kb)
    assert big[0] == 2.2 and big[1] == pytest.approx(2.5166, abs=1e-3)  # sqrt(190 x 120 / 3600) = 2.52, capped [L §2]
    assert big[2].endswith(", counted as 2.2 m2 (label cap)")


def dose_card(kb, order, **changes):
    return only(list(dose_check(make_facts(orders=(order,), draft_orders=(order,), **changes), kb)), "dose-check")


def test_every_dose_on_the_order_is_checked_and_the_highest_reported_with_the_others(kb):
    """40 mg/m2 ordered, 50 mg/m2 calculated and 100.26 mg: against 40 mg/m2 x 1.77 m2 = 70.6 mg [L §2], 100.3 mg is
    the highest (42% above), and the others are listed under it."""
    import dataclasses

    order = dataclasses.replace(ixabepilone_order(40), doses=(
        Dose(raw="40 mg/m2", mg_per_m2=40), Dose(raw="50 mg/m2", mg_per_m2=50, kind="calculated"),
        Dose(raw="100.26 mg", mg=100.26)))
    finding = dose_card(kb, order)
    assert finding.summary == "Ixabepilone 100.3 mg > 70.6 mg (40 mg/m2 x 1.77 m2) by 42%"
    assert finding.detail.splitlines()[:3] == [
        "- ixabepilone 45 MG Injection: **100.3 mg** ordered; label dose 40 mg/m2 x 1.77 m2 = 70.6 mg, flagged above "
        "77.7 mg; BSA 1.77 m2 (Mosteller; height 165 cm on 2026-08-17, weight 68 kg on 2026-11-22)",
        "  - also on the order: ixabepilone 45 MG Injection: **40 mg/m2** ordered; label dose 40 mg/m2, flagged above "
        "44 mg/m2",
        "  - also on the order: ixabepilone 45 MG Injection: **50 mg/m2** (calculated dose); label dose 40 mg/m2, "
        "flagged above 44 mg/m2",
    ]


def test_a_dose_that_cannot_be_verified_says_why_at_order_sign_and_waits_at_order_select(kb):
    """CDS Hooks order-select: the order is still being written (the sandbox pre-fills "1 {pill}")."""
    unreadable = ixabepilone_order(dose=Dose(raw="1 {pill}", problem="unit {pill} is not a dose"))
    finding = dose_card(kb, unreadable)
    assert finding.summary == "Ixabepilone dose cannot be verified: dose unreadable"
    assert markdown_text(finding.detail).splitlines()[0] == (
        "- Cannot verify: ixabepilone 45 MG Injection: dose '1 {pill}' cannot be read (unit {pill} is not a dose)")
    assert list(dose_check(make_facts(orders=(unreadable,), draft_orders=(unreadable,), hook="order-select"), kb)) == []
    assert dose_card(kb, ixabepilone_order(dose=None)).detail.splitlines()[0] == (
        "- Cannot verify: ixabepilone 45 MG Injection: no dose in the order")
    no_bsa = dose_card(kb, ixabepilone_order(mg=70, dose=Dose(raw="70 mg", mg=70, kind="ordered")), labs={})
    assert no_bsa.summary == "Ixabepilone dose cannot be verified: no height on record; no weight on record"
    assert no_bsa.detail.splitlines()[0] == ("- Cannot verify: ixabepilone 45 MG Injection: 70 mg (ordered dose), "
                                             "cannot compute BSA: no height on record; no weight on record")
