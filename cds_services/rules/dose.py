"""Dose check: the ordered dose against the label dose for this patient [L §2].

Label dose: 40 mg/m2, or the monotherapy hepatic row's dose [L §2.4], or
20 mg/m2 with a strong CYP3A4 inhibitor [L §7]; BSA (Mosteller) above 2.2 m2
counts as 2.2 [L §2]. An order more than 10% above (a project setting) is
flagged. A dose that cannot be read, or a mg dose without a current height
and weight, is "cannot verify", never silence.
"""
from __future__ import annotations

import math
from typing import Iterator

from cds_services.findings import Finding
from cds_services.knowledge import Knowledge
from fhir_mappings.facts import DrugUse, PatientFacts

from .assess import adjusted_dose
from .common import age_days, day, escape_md, is_fresh, make, num, rule, usable


def mosteller(height_cm: float, weight_kg: float) -> float:
    """BSA in m2: sqrt(height_cm x weight_kg / 3600)."""
    return math.sqrt(height_cm * weight_kg / 3600)


def bsa_for(facts: PatientFacts, kb: Knowledge) -> tuple[float | None, float | None, str]:
    """(capped BSA, uncapped BSA, how it was found or why not)."""
    problems = []
    if not facts.known("vitals"):
        return None, None, f"height and weight could not be read ({facts.unavailable['vitals']})"
    for key in ("height", "weight"):
        lab = facts.labs.get(key)
        window = kb.freshness[key]  # [project setting] height 365 d, weight 30 d
        if lab is None:
            problems.append(f"no {key} on record")
        elif lab.value is None:
            problems.append(f"{key} unusable ({lab.problem or 'no value'})")
        elif lab.comparator:
            problems.append(f"{key} recorded only as a bound ('{lab.raw}')")
        elif not is_fresh(facts, lab, kb):
            age = age_days(facts, lab.effective)
            old = f"{int(age)} days old" if age is not None else "undated"
            problems.append(f"{key} {old} (window {num(window.value)} d)")
    if problems:
        return None, None, "; ".join(problems)
    height, weight = usable(facts.labs["height"]), usable(facts.labs["weight"])
    raw = mosteller(height.value, weight.value)  # type: ignore[union-attr, arg-type]
    cap = kb.value("bsa-cap")  # [L §2] 2.2 m2
    bsa = min(raw, cap)
    how = (
        f"BSA {num(raw)} m2 (Mosteller; height {num(height.value, 1)} cm on {day(height.effective)}, "  # type: ignore[union-attr]
        f"weight {num(weight.value, 1)} kg on {day(weight.effective)})"  # type: ignore[union-attr]
    )
    if raw > cap:
        how += f", counted as {num(cap)} m2 (label cap)"
    return bsa, raw, how


@rule("dose-check")
def dose_check(facts: PatientFacts, kb: Knowledge) -> Iterator[Finding]:
    target, reasons = adjusted_dose(facts, kb)
    tolerance = kb.thresholds["dose-tolerance"]  # [project setting] 10%
    bsa, _, bsa_text = bsa_for(facts, kb)
    over: list[tuple[DrugUse, str, str]] = []  # (order, short, long)
    unknown: list[tuple[DrugUse, str, str]] = []
    for order in facts.orders:
        dose = order.dose
        if dose is None or (dose.mg is None and dose.mg_per_m2 is None):
            why = (dose.problem if dose else None) or "no dose in the order"
            raw = f" '{escape_md(dose.raw)}'" if dose and dose.raw else ""
            unknown.append((order, "dose unreadable", f"{escape_md(order.display)}: dose{raw} cannot be read ({escape_md(why)})"))
            continue
        if dose.mg_per_m2 is not None:
            limit = round(target * (1 + tolerance.value), 6)
            if dose.mg_per_m2 > limit:
                pct = (dose.mg_per_m2 / target - 1) * 100
                over.append(
                    (
                        order,
                        f"{num(dose.mg_per_m2)} mg/m2 > {num(target)} mg/m2 by {pct:.0f}%",
                        f"{escape_md(order.display)}: **{num(dose.mg_per_m2)} mg/m2** ordered; label dose {num(target)} mg/m2, "
                        f"flagged above {num(limit)} mg/m2",
                    )
                )
            continue
        if bsa is None:
            unknown.append((order, bsa_text, f"{escape_md(order.display)}: {num(dose.mg)} mg ordered, cannot compute BSA: {escape_md(bsa_text)}"))  # type: ignore[arg-type]
            continue
        expected = target * bsa
        limit = round(expected * (1 + tolerance.value), 6)
        if dose.mg > limit:  # type: ignore[operator]
            pct = (dose.mg / expected - 1) * 100  # type: ignore[operator]
            over.append(
                (
                    order,
                    f"{num(dose.mg, 1)} mg > {num(expected, 1)} mg ({num(target)} mg/m2 x {num(bsa)} m2) by {pct:.0f}%",  # type: ignore[arg-type]
                    f"{escape_md(order.display)}: **{num(dose.mg, 1)} mg** ordered; label dose {num(target)} mg/m2 x "  # type: ignore[arg-type]
                    f"{num(bsa)} m2 = {num(expected, 1)} mg, flagged above {num(limit, 1)} mg; {escape_md(bsa_text)}",
                )
            )
    if not over and not unknown:
        return
    if over and not unknown and len(over) == 1:
        summary = f"Ixabepilone {over[0][1]}"
    elif unknown and not over and len(unknown) == 1:
        summary = f"Ixabepilone dose cannot be verified: {unknown[0][1]}"
    else:
        summary = f"Ixabepilone dose: {len(over)} above the label dose, {len(unknown)} cannot be verified"
    lines = [f"- {long}" for _, _, long in over] + [f"- Cannot verify: {long}" for _, _, long in unknown]
    lines += [
        "",
        "**Label dose for this patient:** " + "; ".join(reasons) + f" → **{num(target)} mg/m2**. BSA above "
        f"{num(kb.value('bsa-cap'))} m2 counts as {num(kb.value('bsa-cap'))} m2 [L §2].",
        f"Orders more than {tolerance.value * 100:.0f}% above it are flagged (a project setting). "
        f"Height and weight must be current (height {num(kb.freshness['height'].value)} d, "
        f"weight {num(kb.freshness['weight'].value)} d).",
        "",
        "**What to do:** recalculate the dose, or record why this dose is intended.",
    ]
    yield make(kb, "dose-check", "warning", summary, "\n".join(lines))
