"""Radiation recall [S; L postmarketing experience]: radiotherapy in the last 90 days.

The window is this project's setting, stated on the card. A radiotherapy
procedure without a date is reported: it could be recent, and silence would
read as "none".
"""
from __future__ import annotations

from collections.abc import Iterator

from cds_services.findings import Finding
from cds_services.knowledge import Knowledge
from fhir_mappings.facts import PatientFacts

from .common import Draft, evidence_line, newest, num, recent_evidence, rule


@rule("radiation-recall")
def radiation_recall(facts: PatientFacts, kb: Knowledge) -> Iterator[Draft | Finding]:
    days = kb.thresholds["radiotherapy-window"]  # [project setting] 90 d
    recent = recent_evidence(facts, facts.radiotherapy, days.value)
    if not recent:
        return
    latest = newest(recent)
    when = f" {latest.date:%Y-%m-%d}" if latest and latest.date else " (date unknown)"
    summary = f"Radiotherapy{when}, within {num(days.value)} days: watch for radiation recall"
    lines = [evidence_line(facts, e) for e in recent] + [
        "",
        "Radiation recall (inflammation of a previously irradiated field) has been reported when ixabepilone "
        "is given after radiotherapy [S; L postmarketing experience].",
        f"The {num(days.value)}-day window is a project setting.",
        "",
        "**What to do:** examine the irradiated field before and during treatment.",
    ]
    yield Draft("info", summary, "\n".join(lines))
