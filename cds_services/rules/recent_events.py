"""Radiation recall [S], live vaccines [S] and neuropathy risk [L §5.1].

Windows (90 days for radiotherapy, 30 for vaccines) are this project's
settings, stated on the cards. An event without a date is reported: it could
be recent, and silence would read as "none".
"""
from __future__ import annotations

from collections.abc import Iterator

from cds_services.findings import Action, Finding, Suggestion
from cds_services.knowledge import Knowledge
from fhir_mappings.facts import Evidence, PatientFacts

from .assess import ixabepilone_regimen
from .common import ago, day, escape_md, make, names, num, rule, since, use_line


def _recent(facts: PatientFacts, items: tuple[Evidence, ...], days: float) -> list[Evidence]:
    start = since(facts, days)
    return [e for e in items if e.date is None or e.date >= start]


def _line(facts: PatientFacts, e: Evidence) -> str:
    parts = [f"**{escape_md(e.label)}**", f"{day(e.date)} ({ago(facts, e.date)})" if e.date else "date unknown"]
    if e.code:
        parts.append(f"code {escape_md(e.code)}")
    if e.ref:
        parts.append(escape_md(e.ref))
    return "- " + ", ".join(parts)


@rule("radiation-recall")
def radiation_recall(facts: PatientFacts, kb: Knowledge) -> Iterator[Finding]:
    days = kb.thresholds["radiotherapy-window"]  # [project setting] 90 d
    recent = _recent(facts, facts.radiotherapy, days.value)
    if not recent:
        return
    latest = max((e for e in recent if e.date), key=lambda e: e.date, default=None)  # type: ignore[arg-type, return-value]
    when = f" {latest.date:%Y-%m-%d}" if latest and latest.date else " (date unknown)"
    summary = f"Radiotherapy{when}, within {num(days.value)} days: watch for radiation recall"
    lines = [_line(facts, e) for e in recent] + [
        "",
        "Radiation recall (inflammation of a previously irradiated field) has been reported when ixabepilone "
        "is given after radiotherapy [S; L postmarketing experience].",
        f"The {num(days.value)}-day window is a project setting.",
        "",
        "**What to do:** examine the irradiated field before and during treatment.",
    ]
    yield make(kb, "radiation-recall", "info", summary, "\n".join(lines))


@rule("live-vaccine")
def live_vaccine(facts: PatientFacts, kb: Knowledge) -> Iterator[Finding]:
    days = kb.thresholds["live-vaccine-window"]  # [project setting] 30 d
    if not facts.orders:
        # A patient already on ixabepilone: the live vaccine being ordered now (issue 12 item 6).
        drafts = {u.ref for u in facts.draft_orders}
        recent = [e for e in facts.ordered_live_vaccines if e.ref in drafts]
    else:
        recent = [*facts.ordered_live_vaccines, *_recent(facts, facts.live_vaccines, days.value)]
    if not recent:
        return
    shown = names(e.label for e in recent)  # summary: plain text
    if not facts.orders:
        regimen = ixabepilone_regimen(facts, kb)
        summary = f"Live vaccine {shown} ordered for a patient on ixabepilone: avoid live vaccines with chemotherapy"
        regimen_lines = ["", "**The patient is on ixabepilone:**"] + [f"- {use_line(u)}" for u in regimen]
    else:
        summary = f"Live vaccine {shown}: avoid live vaccines with chemotherapy"
        regimen_lines = []
    lines = [_line(facts, e) for e in recent] + regimen_lines + [
        "",
        "Chemotherapy suppresses immunity: live vaccines are to be avoided during treatment [S].",
        f"Counted: given within {num(days.value)} days (a project setting), or ordered (draft or active order).",
        "",
        "**What to do:** cancel a live-vaccine order, or discuss timing; inactivated vaccines are not affected.",
    ]
    suggestions: tuple[Suggestion, ...] = ()
    if not facts.orders:
        actions = tuple(Action(type="delete", description=f"Remove the draft order {e.label}", resource_id=e.ref)
                        for e in recent if e.ref)  # plain text: no Markdown
        if actions:
            suggestions = (Suggestion(label="Remove the live vaccine order", actions=actions, is_recommended=True),)
    yield make(kb, "live-vaccine", "warning", summary, "\n".join(lines), suggestions=suggestions)


@rule("neuropathy-risk")
def neuropathy_risk(facts: PatientFacts, kb: Knowledge) -> Iterator[Finding]:
    items = [*facts.neuropathy, *facts.diabetes]
    if not items:
        return
    what = []
    if facts.neuropathy:
        what.append("peripheral neuropathy")
    if facts.diabetes:
        what.append("diabetes")
    summary = f"{' and '.join(what).capitalize()} on record: higher risk of severe ixabepilone neuropathy"
    lines = [_line(facts, e) for e in items] + [
        "",
        "**Label:** patients with diabetes mellitus or existing peripheral neuropathy may be at higher risk of "
        "severe neuropathy [L §5.1]. Grade 2 neuropathy for ≥ 7 days or grade 3 for < 7 days: reduce the dose "
        "by 20%; grade 3 for ≥ 7 days or disabling: discontinue [L §2.2].",
        "",
        "**What to do:** grade neuropathy at each visit.",
    ]
    yield make(kb, "neuropathy-risk", "info", summary, "\n".join(lines))
