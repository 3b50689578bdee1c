"""Dose check: the ordered dose against the label dose for this patient [L §2].

Label dose: 40 mg/m2, or the monotherapy hepatic row's dose [L §2.4], or
20 mg/m2 with a strong CYP3A4 inhibitor [L §7]; BSA (Mosteller) above 2.2 m2
counts as 2.2 [L §2]. Every dose the order carries is checked (Epic sends the
ordered 40 mg/m2 and the calculated 120 mg side by side) and the highest is
reported; one more than 10% above (a project setting) is flagged. A dose that
cannot be read, or a mg dose without a current height and weight, is "cannot
verify" at order-sign, never silence.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

from cds_services.catalog import ORDER_SELECT
from cds_services.findings import Finding
from cds_services.knowledge import Knowledge
from fhir_mappings.facts import Dose, DrugUse, LabValue, PatientFacts

from .assess import adjusted_dose
from .common import Draft, age_days, day, escape_md, is_fresh, num, rule


def mosteller(height_cm: float, weight_kg: float) -> float:
    """BSA in m2: sqrt(height_cm x weight_kg / 3600)."""
    return math.sqrt(height_cm * weight_kg / 3600)


def bsa_for(facts: PatientFacts, kb: Knowledge) -> tuple[float | None, float | None, str]:
    """(capped BSA, uncapped BSA, how it was found or why not)."""
    problems = []
    measured: dict[str, tuple[float, LabValue]] = {}  # key -> (value, the lab it came from)
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
        else:
            measured[key] = (lab.value, lab)
    if problems:
        return None, None, "; ".join(problems)
    (height, height_lab), (weight, weight_lab) = measured["height"], measured["weight"]
    raw = mosteller(height, weight)
    cap = kb.value("bsa-cap")  # [L §2] 2.2 m2
    bsa = min(raw, cap)
    how = (
        f"BSA {num(raw)} m2 (Mosteller; height {num(height, 1)} cm on {day(height_lab.effective)}, "
        f"weight {num(weight, 1)} kg on {day(weight_lab.effective)})"
    )
    if raw > cap:
        how += f", counted as {num(cap)} m2 (label cap)"
    return bsa, raw, how


def _kind(dose: Dose) -> str:
    """" (calculated dose)" for a typed doseAndRate entry, else " ordered"."""
    return f" ({dose.kind} dose)" if dose.kind else " ordered"


@rule("dose-check")
def dose_check(facts: PatientFacts, kb: Knowledge) -> Iterator[Draft | Finding]:
    """Every dose the order carries, ordered and calculated alike; the highest against the label dose.

    At order-select the clinician is still writing the order (the sandbox
    pre-fills "1 {pill}"): a dose that is missing or cannot be read yet is
    reported at order-sign only; a readable dose that is too high is flagged
    at both (issue 12 item 7).
    """
    target, reasons = adjusted_dose(facts, kb)
    tolerance = kb.thresholds["dose-tolerance"]  # [project setting] 10%
    bsa, _, bsa_text = bsa_for(facts, kb)
    selecting = facts.hook == ORDER_SELECT
    over: list[tuple[DrugUse, str, str]] = []  # (order, short, long)
    unknown: list[tuple[DrugUse, str, str]] = []
    for order in facts.orders:
        doses = order.doses or ((order.dose,) if order.dose else ())
        if not doses:
            unknown.append((order, "no dose in the order", f"{escape_md(order.display)}: no dose in the order"))
            continue
        checked: list[tuple[float, Dose, str, str]] = []  # (times the label dose, dose, short, long)
        for dose in doses:
            if dose.mg_per_m2 is not None:
                limit = round(target * (1 + tolerance.value), 6)
                checked.append((
                    dose.mg_per_m2 / target, dose,
                    f"{num(dose.mg_per_m2)} mg/m2 > {num(target)} mg/m2 by {(dose.mg_per_m2 / target - 1) * 100:.0f}%",
                    f"{escape_md(order.display)}: **{num(dose.mg_per_m2)} mg/m2**{_kind(dose)}; label dose "
                    f"{num(target)} mg/m2, flagged above {num(limit)} mg/m2",
                ))
                continue
            mg = dose.mg
            if mg is None:  # neither mg nor mg/m2: the dose could not be read
                raw = f" '{escape_md(dose.raw)}'" if dose.raw else ""
                unknown.append((order, "dose unreadable",
                                f"{escape_md(order.display)}: dose{raw}{_kind(dose) if dose.kind else ''} "
                                f"cannot be read ({escape_md(dose.problem or 'no dose')})"))
                continue
            if bsa is None:
                unknown.append((order, bsa_text, f"{escape_md(order.display)}: {num(mg)} mg{_kind(dose)}, "
                                                 f"cannot compute BSA: {escape_md(bsa_text)}"))
                continue
            expected = target * bsa
            limit = round(expected * (1 + tolerance.value), 6)
            checked.append((
                mg / expected, dose,
                f"{num(mg, 1)} mg > {num(expected, 1)} mg ({num(target)} mg/m2 x {num(bsa)} m2) by "
                f"{(mg / expected - 1) * 100:.0f}%",
                f"{escape_md(order.display)}: **{num(mg, 1)} mg**{_kind(dose)}; label dose {num(target)} mg/m2 x "
                f"{num(bsa)} m2 = {num(expected, 1)} mg, flagged above {num(limit, 1)} mg; {escape_md(bsa_text)}",
            ))
        if not checked:
            continue
        ratio, _, short, long = max(checked, key=lambda c: c[0])  # the highest against the label dose
        if ratio > 1 + tolerance.value + 1e-9:
            others = [c[3] for c in checked if c[3] != long]
            more = "".join(f"\n  - also on the order: {o}" for o in others)
            over.append((order, short, long + more))
    if selecting:
        unknown = []  # the order is still being written: an unreadable dose is not an error yet
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
        f"Every dose on the order is checked (ordered and calculated, each dose line and range); the highest is "
        f"reported. Orders more than {tolerance.value * 100:.0f}% above the label dose are flagged (a project "
        f"setting). Height and weight must be current (height {num(kb.freshness['height'].value)} d, "
        f"weight {num(kb.freshness['weight'].value)} d).",
        "",
        "**What to do:** recalculate the dose, or record why this dose is intended.",
    ]
    yield Draft("warning", summary, "\n".join(lines))
