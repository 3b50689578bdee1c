"""Live vaccines during chemotherapy [S]: given in the last 30 days, or ordered.

The window is this project's setting, stated on the card. A vaccination
without a date is reported: it could be recent. For a patient already on
ixabepilone, a live vaccine being ordered is checked against that course
(issue 12 item 6), and the card suggests removing the order.
"""
from __future__ import annotations

from collections.abc import Iterator

from cds_services.findings import Action, Finding, Suggestion
from cds_services.knowledge import Knowledge
from fhir_mappings.facts import PatientFacts

from .assess import ixabepilone_regimen
from .common import Draft, evidence_line, names, num, recent_evidence, rule, use_line


@rule("live-vaccine")
def live_vaccine(facts: PatientFacts, kb: Knowledge) -> Iterator[Draft | Finding]:
    days = kb.thresholds["live-vaccine-window"]  # [project setting] 30 d
    if not facts.orders:
        # A patient already on ixabepilone: the live vaccine being ordered now (issue 12 item 6).
        drafts = {u.ref for u in facts.draft_orders}
        recent = [e for e in facts.ordered_live_vaccines if e.ref in drafts]
    else:
        recent = [*facts.ordered_live_vaccines, *recent_evidence(facts, facts.live_vaccines, days.value)]
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
    lines = [evidence_line(facts, e) for e in recent] + regimen_lines + [
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
    yield Draft("warning", summary, "\n".join(lines), suggestions=suggestions)
