"""Hypersensitivity to the Cremophor EL vehicle or to ixabepilone [L §4; §2.3].

The IXEMPRA diluent is polyoxyl 35 castor oil (Cremophor EL). A severe
reaction to it contraindicates IXEMPRA [L §4]; a recorded allergy of unknown
severity is treated as severe. Other drugs formulated in Cremophor EL
(paclitaxel, cyclosporine injection, teniposide) may have caused the reaction
through the vehicle: a warning, premedicate with a corticosteroid.
"""
from __future__ import annotations

from typing import Iterator

from cds_services.findings import Finding
from cds_services.knowledge import Knowledge
from fhir_mappings.facts import Allergy, PatientFacts

from .common import cite, day, delete_orders, escape_md, make, names, rule

RANK = {"info": 0, "warning": 1, "critical": 2}
SUBSTANCE_TEXT = {
    "cremophor": "Cremophor EL (polyoxyl castor oil)",
    "castor-oil": "castor oil",
    "ixabepilone": "ixabepilone",
    "paclitaxel": "paclitaxel (Cremophor-formulated)",
    "cyclosporine": "cyclosporine (Cremophor-formulated injection)",
    "teniposide": "teniposide (Cremophor-formulated)",
}


def _indicator(kb: Knowledge, substance: str, allergy: Allergy) -> tuple[str, str | None]:
    entry = kb.hypersensitivity[substance]
    indicator = entry.indicator or "warning"
    if indicator == "critical" and substance == "cremophor" and allergy.criticality == "low":
        # [L §4] names severe (grade 3/4) reactions; a record that says low risk is a warning.
        return "warning", "recorded as low criticality; the contraindication is for severe (grade 3/4) reactions"
    return indicator, None


@rule("hypersensitivity")
def hypersensitivity(facts: PatientFacts, kb: Knowledge) -> Iterator[Finding]:
    hits: list[tuple[str, str, Allergy, str | None]] = []
    for allergy in facts.allergies:
        for substance in sorted(allergy.substances & frozenset(kb.hypersensitivity)):
            indicator, why = _indicator(kb, substance, allergy)
            hits.append((indicator, substance, allergy, why))
    if not hits:
        return
    hits.sort(key=lambda h: -RANK[h[0]])
    worst = hits[0][0]
    substances = [h[1] for h in hits]
    top = substances[0]
    shown = names(SUBSTANCE_TEXT.get(s, s) for s in substances)
    if worst == "critical" and top == "ixabepilone" and "cremophor" not in substances:
        summary = f"Prior hypersensitivity to ixabepilone: give only with corticosteroid + H1/H2 premedication"
    elif worst == "critical":
        summary = f"Allergy to {shown}: ixabepilone contraindicated (Cremophor EL diluent)"
    else:
        summary = f"Allergy to {shown}: possible Cremophor EL reaction; premedicate with a corticosteroid"
    lines = []
    for indicator, substance, allergy, why in hits:
        entry = kb.hypersensitivity[substance]
        parts = [f"**{escape_md(allergy.display)}**", f"criticality {escape_md(allergy.criticality or 'not recorded')}"]
        if allergy.date:
            parts.append(day(allergy.date))
        if allergy.ref:
            parts.append(escape_md(allergy.ref))
        judged = " (this project's reading of the label)" if entry.judgment else ""
        lines.append(f"- {', '.join(parts)} ({indicator}): {entry.note} {cite(entry.source, entry.section)}{judged}")
        if why:
            lines.append(f"  - Warning, not critical: {why}.")
    steroid = kb.premedication.corticosteroid
    lines += [
        "",
        "**Label:** IXEMPRA is contraindicated after a severe (grade 3/4) hypersensitivity reaction to agents "
        "containing Cremophor EL or its derivatives (polyoxyethylated castor oil) [L §4]. A recorded allergy of "
        "unknown severity is treated as severe.",
        f"**Premedication:** H1 and H2 antagonists 1 hour before every infusion; after a prior reaction add a "
        f"corticosteroid ({steroid.display}) {cite(steroid.source, steroid.section)}.",
    ]
    yield make(
        kb,
        "hypersensitivity",
        worst,
        summary,
        "\n".join(lines),
        source=kb.hypersensitivity[top].source,
        section=kb.hypersensitivity[top].section,
        suggestions=delete_orders(facts) if worst == "critical" else (),
    )
