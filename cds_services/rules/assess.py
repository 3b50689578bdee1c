"""Shared clinical assessments that several rules read.

The hepatic grade, the CYP3A4 matches and the adjusted dose are needed by
their own rules and by the dose check and the suggestions; computing them in
one place keeps the cards consistent (one dose, one reason).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cds_services.knowledge import HepaticBand, Interaction, Knowledge
from fhir_mappings.facts import DrugUse, LabValue, PatientFacts

from .common import IXABEPILONE, drug_uses, has_capecitabine, num, usable

LIVER = ("ast", "alt", "bilirubin")
PREMED_STEROID = "dexamethasone"


@dataclass(frozen=True)
class LiverValue:
    lab: LabValue
    uln: float
    uln_defaulted: bool
    ratio: float  # value / ULN, rounded so 1.8/1.2 is exactly 1.5


@dataclass(frozen=True)
class HepaticGrade:
    """The monotherapy table [L §2.4] applied to the latest liver tests.

    ``band_index`` is the table row (0 = no reduction), None when beyond the
    table (not recommended). ``missing`` names tests that could not be used.
    """

    values: dict[str, LiverValue]
    band_index: int | None
    band: HepaticBand | None
    missing: tuple[str, ...]
    gilbert: bool

    @property
    def reduced(self) -> bool:
        return self.band_index is None or self.band_index > 0


def liver_values(facts: PatientFacts, kb: Knowledge) -> dict[str, LiverValue]:
    out = {}
    for key in LIVER:
        lab = usable(facts.labs.get(key))
        if lab is None:
            continue
        if lab.uln is not None and lab.uln > 0:
            uln, defaulted = lab.uln, lab.uln_defaulted
        else:
            uln, defaulted = kb.uln_defaults[key].value, True  # [project setting] documented default ULN
        out[key] = LiverValue(lab, uln, defaulted, round(lab.value / uln, 6))  # type: ignore[operator]
    return out


def grade(facts: PatientFacts, kb: Knowledge) -> HepaticGrade:
    """First row of the table whose limits hold; bilirubin ignored with Gilbert's syndrome [L §2.4]."""
    values = liver_values(facts, kb)
    gilbert = bool(facts.gilbert_syndrome)
    transaminase = max((values[k].ratio for k in ("ast", "alt") if k in values), default=0.0)
    bilirubin = values["bilirubin"].ratio if "bilirubin" in values and not gilbert else 0.0
    band_index: int | None = None
    for i, band in enumerate(kb.hepatic_bands):  # [L §2.4 Table], mildest row first
        if transaminase <= band.transaminase_max_x_uln and bilirubin <= band.bilirubin_max_x_uln:
            band_index = i
            break
    missing = tuple(k for k in LIVER if k not in values)
    band = kb.hepatic_bands[band_index] if band_index is not None else None
    return HepaticGrade(values, band_index, band, missing, gilbert)


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


def recently_stopped(facts: PatientFacts, kb: Knowledge, drugs: frozenset[str], days: float) -> list[DrugUse]:
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
    return matches_of(interacting_uses(facts) + recently_stopped(facts, kb, inhibitors, washout), inhibitors, kb)


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
        if use.origin == "draft" and hit == frozenset({PREMED_STEROID}):
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
        if g.band is not None and g.band.dose_mg_per_m2 < dose:
            dose = g.band.dose_mg_per_m2
            reasons.append(f"hepatic impairment: {g.band.dose_text} [L §2.4]")
    if strong_inhibitor_uses(facts, kb):
        inhibitor = kb.value("strong-inhibitor-dose")  # [L §7] 20 mg/m2
        if inhibitor < dose:
            dose = inhibitor
        reasons.append(f"strong CYP3A4 inhibitor: {num(inhibitor)} mg/m2 [L §7]")
    return dose, reasons
