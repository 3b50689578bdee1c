"""Labs the checks need that are missing, unusable or older than their window.

ANC and platelets are required before every cycle [L §2.2]; AST, ALT and
bilirubin set the dose [L §2.4]. Windows are project settings (CBC 7 d,
liver tests 14 d). A WBC alone cannot show ANC ≥ 1,500, so it does not stand
in for a missing ANC unless it already proves the count low.
"""
from __future__ import annotations

from collections.abc import Iterator

from cds_services.findings import Finding
from cds_services.knowledge import Knowledge
from fhir_mappings.facts import PatientFacts

from .common import LAB_NAMES, Draft, age_days, below, day, escape_md, is_fresh, num, rule, usable

REQUIRED = ("neutrophils", "platelets", "ast", "alt", "bilirubin")


def _state(facts: PatientFacts, kb: Knowledge, key: str) -> tuple[str, str] | None:
    """(short, long) when the analyte has no fresh usable result, else None."""
    lab = facts.labs.get(key)
    name = LAB_NAMES[key]
    limit = kb.freshness[key]
    rule_text = f"window {num(limit.value)} d {limit.cite()}"
    if is_fresh(facts, lab, kb, key):
        return None
    if lab is None:
        return f"{name} (none)", f"{name}: no result on record ({rule_text})"
    if lab.value is None:
        return (f"{name} (unusable)",
                f"{name}: latest result cannot be used: {escape_md(lab.problem or 'no value')} ({rule_text})")
    if lab.effective is None:
        return f"{name} (undated)", f"{name}: latest result {escape_md(lab.raw)} has no date ({rule_text})"
    age = int(age_days(facts, lab.effective) or 0)
    return (f"{name} ({age} d old)",
            f"{name}: latest {escape_md(lab.raw)} on {day(lab.effective)}, {age} days old ({rule_text})")


def _wbc_proves_low(facts: PatientFacts, kb: Knowledge) -> bool:
    wbc = usable(facts.labs.get("wbc"))
    return bool(wbc and is_fresh(facts, wbc, kb) and below(wbc, kb.value("wbc-min")))


@rule("labs-missing")
def labs_missing(facts: PatientFacts, kb: Knowledge) -> Iterator[Draft | Finding]:
    if not facts.known("labs"):
        return  # the labs could not be read at all: check-unavailable says so, not "none on record"
    items = []
    for key in REQUIRED:
        state = _state(facts, kb, key)
        if state is None:
            continue
        if key == "neutrophils" and _wbc_proves_low(facts, kb):
            continue  # a fresh WBC < 1,500 already proves ANC < 1,500 (neutrophils-low card)
        items.append(state)
    if not items:
        return
    summary = "No current " + ", ".join(short for short, _ in items) + ": check before dosing"
    lines = [f"- {long}" for _, long in items]
    wbc = usable(facts.labs.get("wbc"))
    if any(k.startswith("ANC") for k, _ in items) and wbc is not None and wbc.value is not None:
        lines.append(
            f"- A WBC of {num(wbc.value)} {wbc.unit} ({day(wbc.effective)}) bounds the ANC only from above: it "
            "cannot show ANC ≥ 1,500."
        )
    lines += [
        "",
        "**Label:** do not begin a cycle unless ANC ≥ 1,500 cells/mm3 and platelets ≥ 100,000 cells/mm3 [L §2.2]; "
        "the monotherapy dose depends on AST, ALT and bilirubin [L §2.4].",
        "The freshness windows are project settings: an old result is not taken as today's.",
        "",
        "**What to do:** order a CBC with differential and liver tests (AST, ALT, total bilirubin) as listed.",
    ]
    yield Draft("warning", summary, "\n".join(lines))
