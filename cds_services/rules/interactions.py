"""CYP3A4 interactions [L §7; F]: ixabepilone is a CYP3A4 substrate [L §12.3].

Strong inhibitors raise exposure (ketoconazole +79% AUC) and strong inducers
lower it (rifampin -43% AUC). Dexamethasone is both a listed inducer and the
corticosteroid premedication: a draft dexamethasone next to the chemotherapy
order is a premedication dose, not chronic induction, and does not count.
"""
from __future__ import annotations

from typing import Iterator

from cds_services.findings import Finding
from cds_services.knowledge import Interaction, Knowledge
from fhir_mappings.drugs import drug_name
from fhir_mappings.facts import DrugUse, PatientFacts

from .assess import adjusted_dose, chronic_inducers, matches_of, strong_inhibitor_uses
from .common import cite, drug_uses, make, names, num, reduce_orders, rule, use_line

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


def _line(use: DrugUse, hits: list[Interaction]) -> str:
    notes = "; ".join(
        f"{drug_name(h.drug)} {cite(h.source, h.section)}" + (f" ({h.note})" if h.note else "") for h in hits
    )
    return f"- {use_line(use, notes)}"


@rule("cyp3a4-strong-inhibitor")
def cyp3a4_strong_inhibitor(facts: PatientFacts, kb: Knowledge) -> Iterator[Finding]:
    matches = strong_inhibitor_uses(facts, kb)
    if not matches:
        return
    dose = kb.thresholds["strong-inhibitor-dose"]  # [L §7] 20 mg/m2
    washout = kb.thresholds["inhibitor-washout"]  # [L §7] about 1 week
    drugs = names(drug_name(h.drug) for _, hits in matches for h in hits)
    plural = "s" if len({h.drug for _, hits in matches for h in hits}) > 1 else ""
    summary = f"Strong CYP3A4 inhibitor{plural} {drugs}: avoid, or reduce ixabepilone to {num(dose.value)} mg/m2"
    lines = [_line(u, h) for u, h in matches]
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
    adjusted, _ = adjusted_dose(facts, kb)  # the lower of this and a hepatic reduction
    yield make(
        kb,
        "cyp3a4-strong-inhibitor",
        "warning",
        summary,
        "\n".join(lines),
        suggestions=reduce_orders(facts, adjusted, "strong CYP3A4 inhibitor, label §7"),
    )


@rule("cyp3a4-strong-inducer")
def cyp3a4_strong_inducer(facts: PatientFacts, kb: Knowledge) -> Iterator[Finding]:
    matches, premeds = chronic_inducers(facts, kb)
    if not matches:
        return
    top = kb.thresholds["inducer-max-dose"]  # [L §7] up to 60 mg/m2 over 4 h
    drugs = names(drug_name(h.drug) for _, hits in matches for h in hits)
    plural = "s" if len({h.drug for _, hits in matches for h in hits}) > 1 else ""
    summary = f"Strong CYP3A4 inducer{plural} {drugs}: may lower ixabepilone levels; avoid"
    lines = [_line(u, h) for u, h in matches]
    if premeds:
        lines.append(
            "- Not counted: "
            + "; ".join(use_line(u) for u in premeds)
            + ": a draft dexamethasone is taken as the premedication dose, and a single premedication dose "
            "is not chronic induction."
        )
    lines += [
        "",
        "Only chronic use counts: active medications, and draft orders other than a dexamethasone premedication.",
        "",
        "**Label:** avoid strong CYP3A4 inducers (rifampin lowered ixabepilone AUC by 43%). If one cannot be "
        f"avoided, the dose may be raised gradually toward {num(top.value)} mg/m2 given over 4 hours, with close "
        f"monitoring {top.cite()}.",
        "",
        f"- {ST_JOHNS_WORT}",
        "",
        "**What to do:** choose an alternative without CYP3A4 induction where possible.",
    ]
    yield make(kb, "cyp3a4-strong-inducer", "warning", summary, "\n".join(lines))


@rule("cyp3a4-other")
def cyp3a4_other(facts: PatientFacts, kb: Knowledge) -> Iterator[Finding]:
    drugs = kb.drugs_of_class(*CLASS_TEXT)
    matches = matches_of(list(drug_uses(facts)), drugs, kb)
    if not matches:
        return
    shown = names((f"{drug_name(h.drug)} ({CLASS_TEXT[h.cls].replace(' CYP3A4', '')})" for _, hits in matches for h in hits), limit=2)
    summary = f"CYP3A4 interaction: {shown} may change ixabepilone levels"
    lines = [_line(u, h) for u, h in matches]
    lines += [
        "",
        "Moderate and weak CYP3A4 inhibitors or inducers change ixabepilone exposure less than strong ones; "
        "the label gives no dose change for them [L §7; F]. Monitor for toxicity (inhibitors) or reduced effect "
        "(inducers).",
        "",
        f"- {GRAPEFRUIT}",
    ]
    yield make(kb, "cyp3a4-other", "info", summary, "\n".join(lines))
