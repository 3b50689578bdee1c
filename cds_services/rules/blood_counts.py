"""Neutrophil and platelet contraindications [L §4; L §2.2].

Both rules read the latest value even when it is old: a low count is never
dismissed for being stale. The card states the date, and says so when the
value is outside the CBC window (labs-missing reports the window separately).
"""
from __future__ import annotations

from collections.abc import Iterator

from cds_services.findings import Finding
from cds_services.knowledge import Knowledge
from fhir_mappings.facts import LabValue, PatientFacts

from .common import (
    Draft,
    age_days,
    at_least,
    below,
    count,
    delete_orders,
    judged,
    lab_status,
    lab_text,
    num,
    rule,
    shown,
    staleness,
    ungraded,
)

LABEL_CYCLE = (
    "**Label:** do not begin a course, or any new cycle, unless ANC ≥ 1,500 cells/mm3 and "
    "platelets ≥ 100,000 cells/mm3 [L §4; §2.2]."
)


def _newer(a: LabValue, b: LabValue) -> bool:
    return a.effective is not None and (b.effective is None or a.effective > b.effective)


def _fever(facts: PatientFacts, kb: Knowledge) -> LabValue | None:
    """A temperature ≥ 38.0 °C [S] within the last 24 h (project window)."""
    temp = judged(facts, "temperature", lambda t: at_least(t, kb.value("fever-min")))
    if temp is None or temp.effective is None:
        return None
    age = age_days(facts, temp.effective)
    hours = kb.value("fever-window")  # [project setting] 24 h
    if age is None or age * 24 > hours or age < 0:
        return None
    return temp if at_least(temp, kb.value("fever-min")) else None  # [S] >= 38.0 Cel


def _low(facts: PatientFacts, analyte: str, limit: float) -> tuple[LabValue | None, bool | None]:
    """The result judged for ``analyte`` and whether it is below ``limit`` (None: a bound that does not say)."""
    lab = judged(facts, analyte, lambda v: below(v, limit))
    return lab, (below(lab, limit) if lab is not None else False)


def _summary_value(name: str, lab: LabValue, limit: float) -> str:
    """"ANC 1,200/mm3 < 1,500" for a measurement; "ANC <1,000/mm3, below 1,500" for a bound."""
    if lab.comparator:
        return f"{name}{lab_status(lab)} {shown(lab, whole=True)}/mm3, below {count(limit)}"
    return f"{name}{lab_status(lab)} {count(lab.value or 0)}/mm3 < {count(limit)}"


@rule("neutrophils-low")
def neutrophils_low(facts: PatientFacts, kb: Knowledge) -> Iterator[Draft | Finding]:
    """ANC < 1,500 [L §4]; a WBC < 1,500 also proves ANC < 1,500 (WBC ≥ ANC) [S]."""
    anc_min = kb.thresholds["anc-min"]  # [L §4] 1,500 cells/mm3
    wbc_min = kb.thresholds["wbc-min"]  # [S] 1,500 cells/mm3
    anc, anc_low = _low(facts, "neutrophils", anc_min.value)
    wbc, wbc_low = _low(facts, "wbc", wbc_min.value)
    if anc is not None and anc_low:
        lab, limit, name = anc, anc_min, "ANC"
    elif wbc is not None and wbc_low and (anc is None or anc_low is None or _newer(wbc, anc)):
        lab, limit, name = wbc, wbc_min, "WBC"
    else:
        if anc is not None and anc_low is None:
            yield ungraded(kb, facts, anc, f"the threshold ANC < {count(anc_min.value)} cells/mm3 {anc_min.cite()}")
        return
    fever = _fever(facts, kb)
    stale = staleness(facts, lab, kb)
    when = f" on {lab.effective:%Y-%m-%d}" if lab.effective else " (undated)"
    if fever:
        summary = (
            f"{_summary_value(name, lab, limit.value)} with fever {fever.comparator or ''}{fever.value:.1f} °C: "
            "febrile neutropenia, ixabepilone contraindicated"
        )
    else:
        summary = f"{_summary_value(name, lab, limit.value)}{when}: ixabepilone contraindicated"
    lines = [f"- **{lab_text(facts, lab, whole=True)}**; threshold < {count(limit.value)} cells/mm3 {limit.cite()}."]
    if name == "WBC":
        lines.append(
            "- No newer ANC: the WBC includes the neutrophils, so WBC < 1,500 means ANC < 1,500 [S]."
        )
    if stale:
        lines.append(f"- This is the latest result, but {stale}.")
    if fever:
        lines.append(
            f"- **Fever**: {lab_text(facts, fever)} (≥ {kb.value('fever-min'):.1f} °C within "
            f"{num(kb.value('fever-window'))} h {kb.thresholds['fever-min'].cite()}): treat as febrile "
            "neutropenia; after febrile neutropenia the label reduces the next dose by 20% [L §2.2]."
        )
    lines += [
        "",
        LABEL_CYCLE,
        "",
        "**What to do:** hold the ixabepilone order and repeat the CBC; treat only once ANC ≥ 1,500 cells/mm3.",
    ]
    yield Draft("critical", summary, "\n".join(lines), suggestions=delete_orders(facts))


@rule("platelets-low")
def platelets_low(facts: PatientFacts, kb: Knowledge) -> Iterator[Draft | Finding]:
    """Platelets < 100,000 cells/mm3 [L §4]."""
    limit = kb.thresholds["platelets-min"]  # [L §4] 100,000 cells/mm3
    lab, low = _low(facts, "platelets", limit.value)
    if lab is None or low is False:
        return
    if low is None:
        yield ungraded(kb, facts, lab, f"the threshold platelets < {count(limit.value)} cells/mm3 {limit.cite()}")
        return
    stale = staleness(facts, lab, kb)
    when = f" on {lab.effective:%Y-%m-%d}" if lab.effective else " (undated)"
    summary = f"{_summary_value('Platelets', lab, limit.value)}{when}: ixabepilone contraindicated"
    lines = [f"- **{lab_text(facts, lab, whole=True)}**; threshold < {count(limit.value)} cells/mm3 {limit.cite()}."]
    if stale:
        lines.append(f"- This is the latest result, but {stale}.")
    lines += [
        "",
        LABEL_CYCLE,
        "",
        "**What to do:** hold the ixabepilone order and repeat the CBC; platelets < 25,000/mm3 "
        "(or < 50,000 with bleeding) call for a 20% dose reduction in later cycles [L §2.2].",
    ]
    yield Draft("critical", summary, "\n".join(lines), suggestions=delete_orders(facts))
