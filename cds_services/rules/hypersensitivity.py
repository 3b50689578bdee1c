"""Hypersensitivity to the Cremophor EL vehicle or to ixabepilone, by how severe it was [L §4; §2.3].

The IXEMPRA diluent is polyoxyl 35 castor oil (Cremophor EL). IXEMPRA is
contraindicated after a severe (grade 3/4) reaction to agents containing
Cremophor EL [L §4]: a severe reaction to Cremophor itself, or to a drug
formulated in it (paclitaxel, cyclosporine, teniposide), or to
IXEMPRA is critical. A milder or unknown-severity reaction to those drugs, or
any prior reaction to ixabepilone that was not severe, is a warning whose
suggestion creates the corticosteroid premedication the label names [L §2.3].
A Cremophor allergy of unknown severity is treated as severe
(shared/clinical/ixabepilone.md). Severe means criticality high, a reaction
recorded as severe, or anaphylaxis (issue 12 item 2). No card suggests the
opposite of its summary: critical cards cancel, warning cards premedicate.
"""
from __future__ import annotations

from collections.abc import Iterator

from cds_services.findings import Action, Finding, Indicator, Suggestion
from cds_services.knowledge import Knowledge, Severity
from fhir_mappings.drugs import IXABEPILONE
from fhir_mappings.facts import Allergy, PatientFacts

from .common import Draft, cite, day, delete_orders, escape_md, names, rule
from .premedication import dose_route, premed_request, steroid_text

RANK = {"info": 0, "warning": 1, "critical": 2}
SUBSTANCE_TEXT = {
    "cremophor": "Cremophor EL (polyoxyl castor oil)",
    "castor-oil": "castor oil",
    IXABEPILONE: "ixabepilone",
    "paclitaxel": "paclitaxel (Cremophor-formulated)",
    "cyclosporine": "cyclosporine (Cremophor-formulated)",  # injection and some oral forms: see its note
    "teniposide": "teniposide (Cremophor-formulated)",
}
LEVEL_TEXT = {"severe": "severe", "not_severe": "not severe", "unknown": "severity not recorded"}


def severity_of(allergy: Allergy) -> tuple[Severity, str]:
    """("severe" | "not_severe" | "unknown", what in the record says so)."""
    severe = [why for why, yes in (("criticality high", allergy.criticality == "high"),
                                   ("reaction recorded as severe", allergy.severity == "severe"),
                                   ("anaphylaxis", allergy.anaphylaxis)) if yes]
    if severe:
        return "severe", ", ".join(severe)
    if allergy.criticality == "low":
        return "not_severe", "criticality low"
    if allergy.severity in ("mild", "moderate"):
        return "not_severe", f"reaction recorded as {allergy.severity}"
    return "unknown", "neither criticality nor reaction severity says it was severe or mild"


def _steroid_ordered(facts: PatientFacts, kb: Knowledge) -> list[str]:
    """Orders of the corticosteroid that can be the premedication: eye drops or a cream of it cannot
    (issue 12 item 3: a local form gives no systemic exposure), so they do not stand in for it."""
    steroid = kb.premedication.corticosteroid.drug
    return [u.display for u in (*facts.draft_orders, *facts.medications)
            if steroid in u.drugs and u.exposure != "local"]


def _premedicate(facts: PatientFacts, kb: Knowledge) -> tuple[Suggestion, ...]:
    steroid = kb.premedication.corticosteroid
    if _steroid_ordered(facts, kb):
        return ()
    text = steroid_text(steroid)
    return (
        Suggestion(
            label=f"Order {steroid.drug} {dose_route(steroid)} premedication",
            actions=(Action(type="create", description=f"Corticosteroid premedication: {text} [L §2.3]",
                            resource=premed_request(facts, steroid)),),
            is_recommended=True,
        ),
    )


@rule("hypersensitivity")
def hypersensitivity(facts: PatientFacts, kb: Knowledge) -> Iterator[Draft | Finding]:
    hits: list[tuple[Indicator, str, Allergy, Severity, str]] = []  # (indicator, substance, allergy, level, why)
    for allergy in facts.allergies:
        level, why = severity_of(allergy)
        hits.extend((kb.hypersensitivity[substance].indicator(level), substance, allergy, level, why)
                    for substance in sorted(allergy.substances & frozenset(kb.hypersensitivity)))
    if not hits:
        return
    hits.sort(key=lambda h: -RANK[h[0]])
    worst = hits[0][0]
    top = hits[0][1]
    worst_substances = [h[1] for h in hits if h[0] == worst]
    shown = names(SUBSTANCE_TEXT.get(s, s) for s in worst_substances)
    steroid = kb.premedication.corticosteroid
    if worst == "critical" and worst_substances == [IXABEPILONE]:
        summary = f"Severe prior reaction to ixabepilone ({hits[0][4]}): do not give (Cremophor EL contraindication)"
    elif worst == "critical":
        summary = f"Severe reaction to {shown}: ixabepilone contraindicated (Cremophor EL)"
    elif IXABEPILONE in worst_substances:
        summary = ("Prior reaction to ixabepilone: give corticosteroid premedication "
                   f"({steroid.drug} {dose_route(steroid)})")
    else:
        summary = f"Allergy to {shown}: possible Cremophor EL reaction; premedicate with a corticosteroid"
    lines = []
    for indicator, substance, allergy, level, why in hits:
        entry = kb.hypersensitivity[substance]
        parts = [f"**{escape_md(allergy.display)}**", f"criticality {escape_md(allergy.criticality or 'not recorded')}",
                 f"reaction severity {escape_md(allergy.severity or 'not recorded')}"]
        if allergy.reactions:
            parts.append("reaction: " + ", ".join(escape_md(r) for r in allergy.reactions))
        if allergy.date:
            parts.append(day(allergy.date))
        if allergy.ref:
            parts.append(escape_md(allergy.ref))
        judged = " (this project's reading of the label)" if entry.judgment else ""
        lines.append(f"- {', '.join(parts)}: **{LEVEL_TEXT[level]}** ({why}) → {indicator}. "
                     f"{entry.note} {cite(entry.source, entry.section)}{judged}")
    ordered = _steroid_ordered(facts, kb)
    lines += [
        "",
        "**Label:** IXEMPRA is contraindicated in patients with a history of a severe (CTC grade 3/4) "
        "hypersensitivity reaction to agents containing Cremophor EL or its derivatives such as polyoxyethylated "
        "castor oil [L §4]. Severe here: criticality high, a reaction recorded as severe, or anaphylaxis. A Cremophor "
        "allergy of unknown severity is treated as severe.",
        f"**Premedication:** H1 and H2 antagonists 1 hour before every infusion; after a prior reaction add a "
        f"corticosteroid ({steroid_text(steroid)}) {cite(steroid.source, steroid.section)}.",
    ]
    if worst != "critical" and ordered:
        lines.append(f"- Corticosteroid already ordered: {'; '.join(escape_md(o) for o in ordered)}.")
    if worst == "critical":
        lines += ["", "**What to do:** do not give ixabepilone; cancel the order."]
    else:
        lines += ["", "**What to do:** confirm what the reaction was, and give the corticosteroid premedication "
                      "with the H1 and H2 antagonists."]
    yield Draft(worst,
        summary,
        "\n".join(lines),
        source=kb.hypersensitivity[top].source,
        section=kb.hypersensitivity[top].section,
        suggestions=delete_orders(facts) if worst == "critical" else _premedicate(facts, kb),
    )
