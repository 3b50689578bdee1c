"""CYP3A4 interactions [L §7; F]: ixabepilone is a CYP3A4 substrate [L §12.3].

Strong inhibitors raise exposure (ketoconazole +79% AUC) and strong inducers
lower it (rifampin -43% AUC). Only systemic exposure counts: a shampoo, cream,
eye drop or other local form of the same ingredient is named as not counted
(issue 12 item 3). A strong inhibitor stopped within about a week still
counts, since the label returns to the full dose only a week after it stops
[L §7]. Dexamethasone is both a listed inducer and the corticosteroid
premedication: a draft dexamethasone next to the chemotherapy order is a
premedication dose, not chronic induction, and does not count.

With no ixabepilone draft but an ixabepilone course in the record (active, or
given within one 3-week cycle), an order for a strong inhibitor or inducer is
checked against that course: the card names the regimen and suggests removing
the interacting draft (issue 12 item 6).
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from cds_services.findings import Action, Finding, Suggestion
from cds_services.knowledge import Interaction, Knowledge
from fhir_mappings.drugs import drug_name
from fhir_mappings.facts import DrugUse, PatientFacts

from .assess import (
    adjusted_dose,
    chronic_inducers,
    interacting_uses,
    ixabepilone_regimen,
    local_uses,
    matches_of,
    stop_date,
    strong_inhibitor_uses,
)
from .common import Draft, age_days, cite, day, escape_md, names, num, reduce_orders, rule, use_line

GRAPEFRUIT = (
    "Grapefruit and grapefruit juice inhibit CYP3A4 and may raise ixabepilone levels: the patient should "
    "avoid them during treatment [L §7; S]."
)
ST_JOHNS_WORT = (
    "St John's wort is a strong CYP3A4 inducer and may lower ixabepilone levels unpredictably: the patient "
    "should not take it [L §7; S]."
)

CLASS_TEXT = {
    "moderate-inhibitor": "moderate CYP3A4 inhibitor",
    "weak-inhibitor": "weak CYP3A4 inhibitor",
    "moderate-inducer": "moderate CYP3A4 inducer",
    "weak-inducer": "weak CYP3A4 inducer",
    "food-inhibitor": "CYP3A4 inhibitor (food)",
}
ENDED = frozenset({"stopped", "completed"})


def _course_note(facts: PatientFacts, use: DrugUse, washout: float | None = None) -> str | None:
    """How this use counts: stopped within the washout, or an active order whose course should have ended."""
    if use.status in ENDED:
        when, how = stop_date(facts, use)
        if when is None:
            return None
        back = when + timedelta(days=washout or 0)
        return (f"{escape_md(use.status)} {day(when)} ({escape_md(how)}); "
                "return to the full dose about 1 week after it stopped "
                f"(from {day(back)}) [L §7]")
    if use.ended is not None and use.ended < facts.now and use.origin != "draft":
        age = age_days(facts, use.ended)
        return (f"still an active order, but its course ended {day(use.ended)} ({escape_md(use.ended_basis)}; "
                f"{int(age or 0)} d ago): confirm it is still taken and discontinue it if not")
    return None


def _form_note(use: DrugUse) -> str:
    if use.exposure == "systemic":
        return f"systemic: {escape_md(use.exposure_basis)}"
    return "route and dose form not recorded: counted as systemic"


def _line(facts: PatientFacts, use: DrugUse, hits: list[Interaction], washout: float | None = None) -> str:
    notes = "; ".join(
        f"{drug_name(h.drug)} {cite(h.source, h.section)}" + (f" ({h.note})" if h.note else "") for h in hits
    )
    extra = [n for n in (_course_note(facts, use, washout), _form_note(use)) if n]
    intent = f"; intent {use.intent}" if use.intent in ("plan", "proposal") else ""
    return f"- {use_line(use, notes)}{intent}" + "".join(f"\n  - {n}" for n in extra)


def _not_counted(facts: PatientFacts, drugs: frozenset[str]) -> list[str]:
    local = local_uses(facts, drugs)
    if not local:
        return []
    return ["", "Not counted (local use, no systemic exposure expected; no source gives a systemic effect):"] + [
        f"- {use_line(u)}: {escape_md(u.exposure_basis)}" for u in local
    ]


def _regimen_lines(facts: PatientFacts, kb: Knowledge) -> list[str]:
    regimen = ixabepilone_regimen(facts, kb)
    window = kb.thresholds["regimen-window"]  # [L §2.1] every 3 weeks
    return ["", f"**The patient is on ixabepilone** (an active order, or one given in the last {num(window.value)} "
                f"days, one cycle {window.cite()}):"] + [f"- {use_line(u)}" for u in regimen]


def _regimen_name(facts: PatientFacts, kb: Knowledge) -> str:
    regimen = ixabepilone_regimen(facts, kb)
    active = [u for u in regimen if u.status not in ENDED]
    if active:
        return "active order"
    last = max((when for u in regimen if (when := stop_date(facts, u)[0]) is not None), default=None)
    return f"ixabepilone given {day(last)}"


def _remove_drafts(uses: list[DrugUse], why: str) -> tuple[Suggestion, ...]:
    actions = tuple(Action(type="delete", description=f"Remove the draft order {u.display} ({why})", resource_id=u.ref)
                    for u in uses if u.origin == "draft" and u.ref)  # plain text: no Markdown
    if not actions:
        return ()
    return (Suggestion(label="Remove the interacting order", actions=actions, is_recommended=True),)


@rule("cyp3a4-strong-inhibitor")
def cyp3a4_strong_inhibitor(facts: PatientFacts, kb: Knowledge) -> Iterator[Draft | Finding]:
    matches = strong_inhibitor_uses(facts, kb)
    if not matches:
        return
    dose = kb.thresholds["strong-inhibitor-dose"]  # [L §7] 20 mg/m2
    washout = kb.thresholds["inhibitor-washout"]  # [L §7] about 1 week
    drugs = names(drug_name(h.drug) for _, hits in matches for h in hits)
    plural = "s" if len({h.drug for _, hits in matches for h in hits}) > 1 else ""
    stopped = [u for u, _ in matches if u.status in ENDED]
    if not facts.orders:
        summary = (f"Strong CYP3A4 inhibitor{plural} {drugs} for a patient on ixabepilone "
                   f"({_regimen_name(facts, kb)}): avoid, or use {num(dose.value)} mg/m2")
    elif stopped and len(stopped) == len(matches):
        when = max((w for u in stopped if (w := stop_date(facts, u)[0]) is not None), default=None)
        summary = (f"Strong CYP3A4 inhibitor{plural} {drugs} stopped {day(when)}: keep ixabepilone at "
                   f"{num(dose.value)} mg/m2 until about 1 week after")
    else:
        summary = f"Strong CYP3A4 inhibitor{plural} {drugs}: avoid, or reduce ixabepilone to {num(dose.value)} mg/m2"
    lines = [_line(facts, u, h, washout.value) for u, h in matches]
    lines += _not_counted(facts, kb.drugs_of_class("strong-inhibitor"))
    if not facts.orders:
        lines += _regimen_lines(facts, kb)
    lines += [
        "",
        f"**Label:** avoid strong CYP3A4 inhibitors (ketoconazole raised ixabepilone AUC by 79%). If one "
        f"cannot be avoided, reduce ixabepilone to **{num(dose.value)} mg/m2**; after the inhibitor is "
        f"stopped, wait about {num(washout.value)} days (1 week) before returning to the full dose "
        f"{dose.cite()}.",
        "",
        f"- {GRAPEFRUIT}",
        "",
        "**What to do:** choose an alternative without CYP3A4 inhibition, or reduce the ixabepilone dose.",
    ]
    if not facts.orders:
        suggestions = _remove_drafts([u for u, _ in matches], "strong CYP3A4 inhibitor during ixabepilone, label §7")
    else:
        adjusted, _ = adjusted_dose(facts, kb)  # the lower of this and a hepatic reduction
        suggestions = reduce_orders(facts, adjusted, "strong CYP3A4 inhibitor, label §7")
    yield Draft("warning", summary, "\n".join(lines), suggestions=suggestions)


@rule("cyp3a4-strong-inducer")
def cyp3a4_strong_inducer(facts: PatientFacts, kb: Knowledge) -> Iterator[Draft | Finding]:
    matches, premeds = chronic_inducers(facts, kb)
    if not matches:
        return
    top = kb.thresholds["inducer-max-dose"]  # [L §7] up to 60 mg/m2 over 4 h
    drugs = names(drug_name(h.drug) for _, hits in matches for h in hits)
    plural = "s" if len({h.drug for _, hits in matches for h in hits}) > 1 else ""
    if not facts.orders:
        summary = (f"Strong CYP3A4 inducer{plural} {drugs} for a patient on ixabepilone "
                   f"({_regimen_name(facts, kb)}): may lower its levels; avoid")
    else:
        summary = f"Strong CYP3A4 inducer{plural} {drugs}: may lower ixabepilone levels; avoid"
    lines = [_line(facts, u, h) for u, h in matches]
    if premeds:
        lines.append(
            "- Not counted: "
            + "; ".join(use_line(u) for u in premeds)
            + ": a draft dexamethasone is taken as the premedication dose, and a single premedication dose "
            "is not chronic induction."
        )
    lines += _not_counted(facts, kb.drugs_of_class("strong-inducer"))
    if not facts.orders:
        lines += _regimen_lines(facts, kb)
    lines += [
        "",
        "Only chronic, systemic use counts: active medications, and draft orders other than a dexamethasone "
        "premedication; local forms (eye drops, creams, shampoos) do not.",
        "",
        "**Label:** avoid strong CYP3A4 inducers (rifampin lowered ixabepilone AUC by 43%). If one cannot be "
        f"avoided, the dose may be raised gradually toward {num(top.value)} mg/m2 given over 4 hours, with close "
        f"monitoring {top.cite()}.",
        "",
        f"- {ST_JOHNS_WORT}",
        "",
        "**What to do:** choose an alternative without CYP3A4 induction where possible.",
    ]
    suggestions = (_remove_drafts([u for u, _ in matches], "strong CYP3A4 inducer during ixabepilone, label §7")
                   if not facts.orders else ())
    yield Draft("warning", summary, "\n".join(lines), suggestions=suggestions)


@rule("cyp3a4-other")
def cyp3a4_other(facts: PatientFacts, kb: Knowledge) -> Iterator[Draft | Finding]:
    if not facts.orders:
        return  # a patient already on ixabepilone: only strong interactions are raised (issue 12 item 6)
    drugs = kb.drugs_of_class(*CLASS_TEXT)
    matches = matches_of(interacting_uses(facts), drugs, kb)
    if not matches:
        return
    shown = names((f"{drug_name(h.drug)} ({CLASS_TEXT[h.cls].replace(' CYP3A4', '')})"
                   for _, hits in matches for h in hits), limit=2)
    summary = f"CYP3A4 interaction: {shown} may change ixabepilone levels"
    lines = [_line(facts, u, h) for u, h in matches]
    lines += _not_counted(facts, drugs)
    lines += [
        "",
        "Moderate and weak CYP3A4 inhibitors or inducers change ixabepilone exposure less than strong ones; "
        "the label gives no dose change for them [L §7; F]. Monitor for toxicity (inhibitors) or reduced effect "
        "(inducers).",
        "",
        f"- {GRAPEFRUIT}",
    ]
    yield Draft("info", summary, "\n".join(lines))
