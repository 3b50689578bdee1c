"""Pregnancy and breastfeeding [L §5; §8.1-8.3; S].

The label treats pregnancy as a warning (embryo-fetal toxicity); the
patient-facing source lists it as a contraindication. We take the stricter.
"""
from __future__ import annotations

from collections.abc import Iterator

from cds_services.findings import Finding
from cds_services.knowledge import Knowledge
from fhir_mappings.facts import Evidence, PatientFacts

from .common import Draft, day, delete_orders, escape_md, newest, num, rule


def evidence_lines(items: tuple[Evidence, ...]) -> list[str]:
    out = []
    for e in items:
        parts = [f"**{escape_md(e.label)}**", day(e.date)]
        if e.ref:
            parts.append(escape_md(e.ref))
        out.append("- " + ", ".join(parts))
    return out


@rule("pregnancy")
def pregnancy(facts: PatientFacts, kb: Knowledge) -> Iterator[Draft | Finding]:
    if not facts.pregnancy:
        return
    female = kb.thresholds["contraception-female"]  # [L §8.3] 7 months
    male = kb.thresholds["contraception-male"]  # [L §8.3] 4 months
    # The summary names the evidence used and its date: the newest dated record, else the first.
    first = newest(facts.pregnancy) or facts.pregnancy[0]
    when = f" {first.date:%Y-%m-%d}" if first.date else " (date unknown)"
    summary = (
        f"Pregnancy: {first.label}{when}: ixabepilone contraindicated (embryo-fetal toxicity)"  # summary: plain text
    )
    lines = [
        *evidence_lines(facts.pregnancy),
        "",
        "**Sources:** IXEMPRA can cause fetal harm [L §5; §8.1]; the patient-facing guidance lists pregnancy "
        "as a contraindication [S]. This service takes the stricter reading.",
        f"**Contraception:** females of reproductive potential: effective contraception during treatment and for "
        f"{num(female.value)} months after the last dose; males with female partners: for {num(male.value)} months "
        f"after the last dose {female.cite()}. IXEMPRA may impair fertility.",
        "",
        "Counted: an active pregnancy Condition (not resolved or abated), a pregnancy-status answer 'pregnant', or a "
        "positive hCG test from the last 10 months; each is cleared by a newer negative test, a newer 'not pregnant' "
        "answer or a recorded delivery or end of pregnancy [ixabepilone.md, Lab freshness].",
        "",
        f"**What to do:** confirm pregnancy status (a negative test within "
        f"{num(kb.freshness['pregnancy-test'].value)} days, newer than this evidence, clears this card); do not give "
        "ixabepilone during pregnancy.",
    ]
    yield Draft("critical", summary, "\n".join(lines), suggestions=delete_orders(facts))


@rule("breastfeeding")
def breastfeeding(facts: PatientFacts, kb: Knowledge) -> Iterator[Draft | Finding]:
    if not facts.breastfeeding:
        return
    after = kb.thresholds["breastfeeding-after"]  # [L §8.2] 2 weeks
    summary = f"Breastfeeding recorded: stop during ixabepilone and for {num(after.value)} weeks after the last dose"
    lines = [
        *evidence_lines(facts.breastfeeding),
        "",
        f"**Label:** advise not to breastfeed during treatment and for {num(after.value)} weeks after the last dose "
        f"{after.cite()}; [S] agrees.",
    ]
    yield Draft("warning", summary, "\n".join(lines))
