"""Shared clinical assessments that several rules read.

The hepatic grade, the CYP3A4 matches and the adjusted dose are needed by
their own rules and by the dose check and the suggestions; computing them in
one place keeps the cards consistent (one dose, one reason).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cds_services.knowledge import HepaticBand, Interaction, Knowledge
from fhir_mappings.drugs import IXABEPILONE
from fhir_mappings.facts import DrugUse, LabValue, PatientFacts

from .common import drug_uses, has_capecitabine, is_above, num, usable

LIVER = ("ast", "alt", "bilirubin")


@dataclass(frozen=True)
class LiverValue:
    lab: LabValue
    uln: float
    uln_defaulted: bool
    ratio: float  # value / ULN, rounded so 1.8/1.2 is exactly 1.5 (a bound when lab.comparator is set)

    def above(self, limit: float) -> bool | None:
        """Is the ratio above ``limit`` x ULN? None when the lab reported a bound that does not say."""
        return is_above(self.ratio, self.lab.comparator, limit)

    def at_most(self, limit: float) -> bool | None:
        answer = self.above(limit)
        return None if answer is None else not answer

    @property
    def shown_ratio(self) -> str:
        """"2.5" or, for a bound, ">10"."""
        return f"{self.lab.comparator or ''}{num(self.ratio)}"


@dataclass(frozen=True)
class HepaticGrade:
    """The monotherapy table [L §2.4] applied to the latest liver tests.

    ``band_index`` is the table row (0 = no reduction), None when beyond the
    table (not recommended). ``missing`` names tests that could not be used.
    ``unsettled`` names tests the lab reported only as a bound that leaves the
    row open: the grade is then not known (``settled`` False), no row is chosen.
    """

    values: dict[str, LiverValue]
    band_index: int | None
    band: HepaticBand | None
    missing: tuple[str, ...]
    gilbert: bool
    unsettled: tuple[str, ...] = ()

    @property
    def settled(self) -> bool:
        return not self.unsettled

    @property
    def reduced(self) -> bool:
        return self.settled and (self.band_index is None or self.band_index > 0)


def _liver_value(lab: LabValue, key: str, kb: Knowledge) -> LiverValue:
    assert lab.value is not None
    if lab.uln is not None and lab.uln > 0:
        uln, defaulted = lab.uln, lab.uln_defaulted
    else:
        uln, defaulted = kb.uln_defaults[key].value, True  # [project setting] documented default ULN
    return LiverValue(lab, uln, defaulted, round(lab.value / uln, 6))


def liver_values(facts: PatientFacts, kb: Knowledge) -> dict[str, LiverValue]:
    """The liver test judged per analyte: the final result, or a newer preliminary one when it is
    higher (a raised preliminary value fires its rule and says so; README, "Which result counts")."""
    out = {}
    for key in LIVER:
        final = usable(facts.labs.get(key))
        preliminary = usable(facts.preliminary_labs.get(key))
        chosen = _liver_value(final, key, kb) if final is not None else None
        if preliminary is not None:
            candidate = _liver_value(preliminary, key, kb)
            if chosen is None or candidate.above(chosen.ratio):
                chosen = candidate
        if chosen is not None:
            out[key] = chosen
    return out


def _all(answers: list[bool | None]) -> bool | None:
    """Three-valued AND: False if any is False, None if any is unknown, else True."""
    if False in answers:
        return False
    return None if None in answers else True


def grade(facts: PatientFacts, kb: Knowledge) -> HepaticGrade:
    """First row of the table whose limits hold; bilirubin ignored with Gilbert's syndrome [L §2.4]."""
    values = liver_values(facts, kb)
    gilbert = bool(facts.gilbert_syndrome)
    counted = [k for k in LIVER if k in values and not (k == "bilirubin" and gilbert)]
    band_index: int | None = None
    unsettled: tuple[str, ...] = ()
    for i, row in enumerate(kb.hepatic_bands):  # [L §2.4 Table], mildest row first
        limits = {k: row.bilirubin_max_x_uln if k == "bilirubin" else row.transaminase_max_x_uln for k in counted}
        holds = _all([values[k].at_most(limits[k]) for k in counted])
        if holds is None:  # a bound leaves this row open: the grade is not known
            unsettled = tuple(k for k in counted if values[k].at_most(limits[k]) is None)
            break
        if holds:
            band_index = i
            break
    missing = tuple(k for k in LIVER if k not in values)
    band = kb.hepatic_bands[band_index] if band_index is not None else None
    return HepaticGrade(values, band_index, band, missing, gilbert, unsettled)


Matches = list[tuple[DrugUse, list[Interaction]]]


def matches_of(uses: list[DrugUse], drugs: frozenset[str], kb: Knowledge) -> Matches:
    out = []
    for use in uses:
        hits = [kb.interactions[d] for d in sorted(use.drugs & drugs)]
        if hits:
            out.append((use, hits))
    return out


def interacting_uses(facts: PatientFacts) -> list[DrugUse]:
    """The medications the CYP3A4 rules weigh: systemic ones (issue 12 item 3).

    A topical, ophthalmic, otic, vaginal or shampoo form of the same
    ingredient is left out (:func:`local_uses`); a medication whose route and
    form are not recorded counts as systemic. With no ixabepilone draft (a
    patient already on ixabepilone), only the drafts in scope are weighed: the
    card is about the order being written.
    """
    uses = facts.draft_orders if not facts.orders else list(drug_uses(facts))
    return [u for u in uses if u.exposure != "local"]


def local_uses(facts: PatientFacts, drugs: frozenset[str]) -> list[DrugUse]:
    """Local forms of the listed drugs: named on the card as not counted, with how the form was decided."""
    uses = facts.draft_orders if not facts.orders else list(drug_uses(facts))
    return [u for u in uses if u.exposure == "local" and u.drugs & drugs]


def stop_date(facts: PatientFacts, use: DrugUse) -> tuple[datetime | None, str]:
    """When a stopped or completed course ended, and how that was read (its recorded end, else its order date).

    An end still ahead on a course marked stopped or completed means it ended
    early: taken as now. Without a recorded end, the order date is the earliest
    it can have stopped.
    """
    if use.ended is not None:
        if use.ended > facts.now:
            return facts.now, f"marked {use.status} before its recorded end {use.ended:%Y-%m-%d}"
        return use.ended, use.ended_basis or "recorded end"
    if use.date is not None:
        return use.date, f"no stop date recorded; ordered {use.date:%Y-%m-%d}, so it stopped on or after that day"
    return None, "no date recorded"


def recently_stopped(facts: PatientFacts, drugs: frozenset[str], days: float) -> list[DrugUse]:
    """Stopped or completed systemic courses of ``drugs`` whose stop date lies within ``days`` of now."""
    if not facts.orders:
        return []  # a patient already on ixabepilone: only the order being written is weighed
    out = []
    for use in facts.stopped_medications:
        if not use.drugs & drugs or use.exposure == "local":
            continue
        when, _ = stop_date(facts, use)
        if when is not None and facts.now - when <= timedelta(days=days):
            out.append(use)
    return out


def strong_inhibitor_uses(facts: PatientFacts, kb: Knowledge) -> Matches:
    """Active, draft or recently stopped strong CYP3A4 inhibitors [L §7; F].

    Stopped within the washout (about 1 week [L §7]) still counts: the label
    returns to the full dose only a week after the inhibitor stops.
    """
    inhibitors = kb.drugs_of_class("strong-inhibitor")
    washout = kb.value("inhibitor-washout")  # [L §7] about 1 week
    return matches_of(interacting_uses(facts) + recently_stopped(facts, inhibitors, washout), inhibitors, kb)


def ixabepilone_regimen(facts: PatientFacts, kb: Knowledge) -> list[DrugUse]:
    """The patient's ixabepilone course in the record: an active order, or one given within a 3-week cycle [L §2.1]."""
    window = timedelta(days=kb.value("regimen-window"))
    active = [u for u in facts.medications if IXABEPILONE in u.drugs]
    given = [u for u in facts.stopped_medications if IXABEPILONE in u.drugs
             and (when := stop_date(facts, u)[0]) is not None and facts.now - when <= window]
    return active + given


def chronic_inducers(facts: PatientFacts, kb: Knowledge) -> tuple[Matches, list[DrugUse]]:
    """Active strong inducers, and draft ones except a dexamethasone premedication (returned apart)."""
    inducers = kb.drugs_of_class("strong-inducer")
    counted: list[DrugUse] = []
    premeds: list[DrugUse] = []
    for use in interacting_uses(facts):
        hit = use.drugs & inducers
        if not hit:
            continue
        if use.origin == "draft" and hit == {kb.premedication.corticosteroid.drug}:
            premeds.append(use)  # a single premedication dose is not chronic induction [L §7]
        else:
            counted.append(use)
    return matches_of(counted, inducers, kb), premeds


def adjusted_dose(facts: PatientFacts, kb: Knowledge) -> tuple[float, list[str]]:
    """The label dose in mg/m2 for this patient, and why it differs from 40.

    40 mg/m2 [L §2]; the monotherapy hepatic row's dose [L §2.4] (the table
    does not apply with capecitabine, where raised values are a contraindication
    instead); 20 mg/m2 with a strong CYP3A4 inhibitor [L §7]. The lowest wins.
    """
    dose = kb.value("standard-dose")  # [L §2] 40 mg/m2
    reasons = [f"label dose {num(dose)} mg/m2 [L §2]"]
    if not has_capecitabine(facts, kb):
        g = grade(facts, kb)
        if not g.settled:
            reasons.append("hepatic row not known: a liver test was reported only as a bound [L §2.4]")
        elif g.band is not None and g.band.dose_mg_per_m2 < dose:
            dose = g.band.dose_mg_per_m2
            reasons.append(f"hepatic impairment: {g.band.dose_text} [L §2.4]")
    if strong_inhibitor_uses(facts, kb):
        inhibitor = kb.value("strong-inhibitor-dose")  # [L §7] 20 mg/m2
        dose = min(dose, inhibitor)
        reasons.append(f"strong CYP3A4 inhibitor: {num(inhibitor)} mg/m2 [L §7]")
    return dose, reasons
