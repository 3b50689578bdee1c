"""Helpers every rule shares: formatting, freshness, drug queries, standard suggestions.

Kept apart from the rules so each rule module reads as the clinical statement
it implements, and so every card formats dates, counts and citations alike.
"""
from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator, Mapping

from cds_services.findings import Action, Finding, Suggestion
from cds_services.knowledge import Knowledge, Threshold
from fhir_mappings.facts import DrugUse, LabValue, PatientFacts

SUMMARY_LIMIT = 140  # CDS Hooks: summary "<140 characters"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
IXABEPILONE = "ixabepilone"

OVERRIDE_REASONS: tuple[tuple[str, str], ...] = (
    ("benefit-outweighs-risk", "Benefit outweighs risk"),
    ("patient-monitored", "Will monitor closely"),
    ("data-outdated", "Data shown is outdated or wrong"),
)

LAB_NAMES = {
    "neutrophils": "ANC",
    "wbc": "WBC",
    "platelets": "Platelets",
    "ast": "AST",
    "alt": "ALT",
    "bilirubin": "Bilirubin",
    "height": "Height",
    "weight": "Weight",
    "temperature": "Temperature",
}

Rule = Callable[[PatientFacts, Knowledge], Iterable[Finding]]


def rule(code: str) -> Callable[[Rule], Rule]:
    """Tag a rule function with its public code (used when it fails)."""

    def tag(fn: Rule) -> Rule:
        fn.code = code  # type: ignore[attr-defined]
        return fn

    return tag


# ----------------------------------------------------------------- formatting


def day(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d") if dt else "date unknown"


def count(value: float) -> str:
    """1234.0 -> "1,234"; counts are shown whole."""
    return f"{value:,.0f}"


def num(value: float, places: int = 2) -> str:
    """Up to ``places`` decimals without trailing zeros: 2.50 -> "2.5", 40.0 -> "40"."""
    text = f"{value:,.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def clip(summary: str) -> str:
    """Guarantee the spec's length limit even for long drug lists."""
    return summary if len(summary) < SUMMARY_LIMIT else summary[: SUMMARY_LIMIT - 2].rstrip(" ,;:") + "…"


def names(items: Iterable[str], limit: int = 3) -> str:
    """"a, b, c +2 more": keeps summaries short however many drugs matched."""
    items = list(dict.fromkeys(items))
    shown = ", ".join(items[:limit])
    return f"{shown} +{len(items) - limit} more" if len(items) > limit else shown


def cite(source: str, section: str) -> str:
    return f"[{source} {section}]"


# ----------------------------------------------------------------- time and labs


def age_days(facts: PatientFacts, when: datetime | None) -> float | None:
    if when is None:
        return None
    return (facts.now - when).total_seconds() / 86400


def ago(facts: PatientFacts, when: datetime | None) -> str:
    age = age_days(facts, when)
    if age is None:
        return "date unknown"
    if age < 1:
        return "today" if age >= 0 else "in the future"
    return f"{int(age)} d ago"


def usable(lab: LabValue | None) -> LabValue | None:
    """The lab when it has a value; a value-less lab (a ``problem``) is never read as normal."""
    return lab if lab is not None and lab.value is not None else None


def window(kb: Knowledge, analyte: str) -> Threshold:
    return kb.freshness[analyte]


def is_fresh(facts: PatientFacts, lab: LabValue | None, kb: Knowledge, analyte: str | None = None) -> bool:
    """True when the lab has a value dated inside its freshness window."""
    lab = usable(lab)
    if lab is None or lab.effective is None:
        return False
    age = age_days(facts, lab.effective)
    return age is not None and age <= window(kb, analyte or lab.analyte).value


def staleness(facts: PatientFacts, lab: LabValue, kb: Knowledge) -> str | None:
    """A sentence when the lab is older than its window (or undated), else None."""
    if is_fresh(facts, lab, kb):
        return None
    limit = window(kb, lab.analyte)
    if lab.effective is None:
        return f"its date is unknown, so it may not reflect today (window {num(limit.value)} d {limit.cite()})"
    return (
        f"it is {int(age_days(facts, lab.effective) or 0)} days old, older than the "
        f"{num(limit.value)}-day window {limit.cite()}: repeat before dosing"
    )


def lab_text(facts: PatientFacts, lab: LabValue, *, whole: bool = False) -> str:
    """"ANC 1,200 cells/mm3 on 2026-11-24 (1 d ago), Observation/x"."""
    assert lab.value is not None
    value = count(lab.value) if whole else num(lab.value)
    ref = f", {lab.ref}" if lab.ref else ""
    plain = {f"{value} {lab.unit}", f"{value.replace(',', '')} {lab.unit}", f"{lab.value:g} {lab.unit}"}
    raw = f"; recorded as {lab.raw}" if lab.raw and lab.raw.strip() not in plain else ""
    return f"{LAB_NAMES.get(lab.analyte, lab.analyte)} {value} {lab.unit} on {day(lab.effective)} ({ago(facts, lab.effective)}{ref}{raw})"


# ----------------------------------------------------------------- drugs


def drug_uses(facts: PatientFacts) -> Iterator[DrugUse]:
    """Active record medications and every draft order, the ixabepilone orders excluded."""
    order_ids = {id(o) for o in facts.orders}
    for use in (*facts.medications, *facts.draft_orders):
        if id(use) in order_ids or use.drugs == frozenset({IXABEPILONE}):
            continue
        yield use


def origin_text(use: DrugUse) -> str:
    if use.origin == "draft":
        return "draft order"
    status = f" ({use.status})" if use.status else ""
    if use.origin == "request":
        return ("order" if use.status in ("stopped", "completed") else "active order") + status
    return "medication statement" + status


def use_line(use: DrugUse, note: str | None = None) -> str:
    parts = [f"**{use.display}**", origin_text(use)]
    if use.date:
        parts.append(day(use.date))
    if use.ref:
        parts.append(use.ref)
    line = ", ".join(parts)
    return f"{line}: {note}" if note else line


def has_capecitabine(facts: PatientFacts, kb: Knowledge) -> list[DrugUse]:
    partners = frozenset(kb.combination_partners)
    return [u for u in (*facts.medications, *facts.draft_orders) if u.drugs & partners]


# ----------------------------------------------------------------- findings and suggestions


def make(
    kb: Knowledge,
    code: str,
    indicator: str,
    summary: str,
    detail: str,
    *,
    source: str | None = None,
    section: str | None = None,
    suggestions: tuple[Suggestion, ...] = (),
    selection_behavior: str = "at-most-one",
) -> Finding:
    info = kb.rule(code)
    return Finding(
        rule=code,
        indicator=indicator,
        summary=clip(summary),
        detail=detail,
        source=source or info.source,
        section=section or info.section,
        suggestions=suggestions,
        selection_behavior=selection_behavior,
        override_reasons=OVERRIDE_REASONS if indicator in ("warning", "critical") else (),
    )


def unavailable(kb: Knowledge, short: str, why: str) -> Finding:
    """One item for the merged check-unavailable card (see rules.evaluate)."""
    return make(kb, "check-unavailable", "info", short, f"- **{short}**: {why}")


def delete_orders(facts: PatientFacts) -> tuple[Suggestion, ...]:
    actions = tuple(
        Action(type="delete", description=f"Remove the draft order {o.display}", resource_id=o.ref)
        for o in facts.orders
        if o.ref
    )
    if not actions:
        return ()
    label = "Cancel the ixabepilone order" if len(actions) == 1 else "Cancel the ixabepilone orders"
    return (Suggestion(label=label, actions=actions, is_recommended=True),)


def ordered_mg_per_m2(order: DrugUse, bsa: float | None) -> float | None:
    if order.dose is None:
        return None
    if order.dose.mg_per_m2 is not None:
        return order.dose.mg_per_m2
    if order.dose.mg is not None and bsa:
        return order.dose.mg / bsa
    return None


def with_dose(resource: Mapping[str, Any], mg_per_m2: float, reason: str) -> dict[str, Any]:
    """The order's JSON with the first dosage's doseQuantity set to ``mg_per_m2``."""
    out = copy.deepcopy(dict(resource))
    dosages = out.get("dosageInstruction") or [{}]
    first = dict(dosages[0])
    rates = list(first.get("doseAndRate") or [{}])
    rate = dict(rates[0])
    rate["doseQuantity"] = {"value": mg_per_m2, "unit": "mg/m2", "system": UCUM, "code": "mg/m2"}
    rates[0] = rate
    first["doseAndRate"] = rates
    first["text"] = f"{num(mg_per_m2)} mg/m2 IV over 3 hours every 3 weeks ({reason})"
    out["dosageInstruction"] = [first, *dosages[1:]]
    return out


def reduce_orders(facts: PatientFacts, mg_per_m2: float, reason: str, bsa: float | None = None) -> tuple[Suggestion, ...]:
    """Replace each ixabepilone draft whose dose is above ``mg_per_m2`` (needs the order's JSON)."""
    actions = []
    for order in facts.orders:
        if order.resource is None:
            continue
        current = ordered_mg_per_m2(order, bsa)
        if current is not None and current <= mg_per_m2 + 1e-9:
            continue
        actions.append(
            Action(
                type="update",
                description=f"Change {order.display} to {num(mg_per_m2)} mg/m2 ({reason})",
                resource=with_dose(order.resource, mg_per_m2, reason),
            )
        )
    if not actions:
        return ()
    return (Suggestion(label=f"Reduce ixabepilone to {num(mg_per_m2)} mg/m2", actions=tuple(actions), is_recommended=True),)


def since(facts: PatientFacts, days: float) -> datetime:
    return facts.now - timedelta(days=days)
