"""Hepatic impairment: the boxed warning with capecitabine, the monotherapy dose table.

[L Boxed warning; §4]: with capecitabine, AST or ALT > 2.5 x ULN or bilirubin
> 1 x ULN is a contraindication. [L §2.4 Table]: as monotherapy the dose steps
down with AST/ALT and bilirubin, and beyond 10 x / 3 x ULN it is not
recommended. Patients with Gilbert's syndrome are excluded from the bilirubin
criteria of the table. Latest values are used even when old (a raised value is
never dismissed) and the card says when they are outside the window.
"""
from __future__ import annotations

from collections.abc import Iterator

from cds_services.findings import Finding
from cds_services.knowledge import Knowledge
from fhir_mappings.facts import PatientFacts

from .assess import LIVER, LiverValue, adjusted_dose, grade, liver_values
from .common import (
    LAB_NAMES,
    Draft,
    delete_orders,
    escape_md,
    has_capecitabine,
    is_fresh,
    lab_status,
    lab_text,
    num,
    reduce_orders,
    rule,
    staleness,
    unavailable,
    use_line,
    window,
)


def _value_line(facts: PatientFacts, kb: Knowledge, v: LiverValue, gilbert_excluded: bool = False) -> str:
    uln_note = (
        f"ULN {num(v.uln)} {v.lab.unit} (**default**: the lab gave no reference range "
        f"{kb.uln_defaults[v.lab.analyte].cite()})"
        if v.uln_defaulted
        else f"ULN {num(v.uln)} {v.lab.unit} (lab reference range)"
    )
    line = f"- {lab_text(facts, v.lab)}: **{v.shown_ratio} x ULN**; {uln_note}"
    stale = staleness(facts, v.lab, kb)
    if stale:
        line += f"; {stale}"
    if gilbert_excluded:
        line += "; not counted (Gilbert's syndrome)"
    return line


def _trigger_text(values: dict[str, LiverValue], keys: list[str]) -> str:
    return ", ".join(f"{LAB_NAMES[k]}{lab_status(values[k].lab)} {values[k].shown_ratio} x ULN" for k in keys)


def _ungraded(kb: Knowledge, facts: PatientFacts, values: dict[str, LiverValue], keys: list[str], what: str
              ) -> Iterator[Finding]:
    for k in keys:
        v = values[k]
        yield unavailable(
            kb, f"{LAB_NAMES[k]} {v.shown_ratio} x ULN not graded",
            f"{lab_text(facts, v.lab)} ({v.shown_ratio} x ULN): the lab reported only a bound, which does not "
            f"settle {what}; a measured value is needed.",
        )


def _stale_suffix(facts: PatientFacts, kb: Knowledge, values: dict[str, LiverValue], keys: list[str]) -> str:
    old = [values[k].lab for k in keys if not is_fresh(facts, values[k].lab, kb)]
    if not old:
        return ""
    dates = sorted({lab.effective.strftime("%Y-%m-%d") for lab in old if lab.effective})
    return f" (old result {dates[0]})" if dates else " (undated result)"


@rule("hepatic-combination")
def hepatic_combination(facts: PatientFacts, kb: Knowledge) -> Iterator[Draft | Finding]:
    """With capecitabine: AST/ALT > 2.5 x ULN or bilirubin > 1 x ULN [L Boxed warning; §4]."""
    partners = has_capecitabine(facts, kb)
    if not partners:
        return
    values = liver_values(facts, kb)
    t_max = kb.value("combination-transaminase-x-uln")  # [L Boxed warning] 2.5 x ULN
    b_max = kb.value("combination-bilirubin-x-uln")  # [L Boxed warning] 1 x ULN
    limits = {"ast": t_max, "alt": t_max, "bilirubin": b_max}
    answers = {k: values[k].above(limits[k]) for k in LIVER if k in values}
    keys = [k for k, raised in answers.items() if raised]
    if not keys:
        open_ = [k for k, raised in answers.items() if raised is None]
        yield from _ungraded(kb, facts, values, open_, f"the capecitabine contraindication (AST/ALT > {num(t_max)} x "
                             f"ULN, bilirubin > {num(b_max)} x ULN) [L Boxed warning; §4]")
        return
    summary = (
        f"{_trigger_text(values, keys)}{_stale_suffix(facts, kb, values, keys)} with capecitabine: "
        "ixabepilone contraindicated (boxed warning)"
    )
    lines = [_value_line(facts, kb, values[k]) for k in keys]
    lines.append("- Capecitabine: " + "; ".join(use_line(u) for u in partners))
    lines += [
        "",
        f"**Label (boxed warning):** with capecitabine, IXEMPRA is contraindicated when AST or ALT > "
        f"{num(t_max)} x ULN or bilirubin > {num(b_max)} x ULN: higher risk of toxicity and "
        "neutropenia-related death [L Boxed warning; §4; §5.3].",
    ]
    if facts.gilbert_syndrome:
        lines.append(
            "- Gilbert's syndrome is recorded: the label's Gilbert exception is for the monotherapy "
            "table only, so bilirubin still counts here."
        )
    lines += ["", "**What to do:** do not give the combination; review liver tests and the regimen."]
    yield Draft("critical", summary, "\n".join(lines), suggestions=delete_orders(facts))


@rule("hepatic-monotherapy")
def hepatic_monotherapy(facts: PatientFacts, kb: Knowledge) -> Iterator[Draft | Finding]:
    """Monotherapy dose band of [L §2.4 Table]; beyond it, not recommended (critical)."""
    if has_capecitabine(facts, kb):
        return  # the boxed-warning rule covers the combination (stricter)
    g = grade(facts, kb)
    if not g.settled:
        yield from _ungraded(kb, facts, g.values, list(g.unsettled), "the monotherapy dose table [L §2.4]")
        return
    if not g.reduced:
        return
    if g.band is None:
        limit_t = kb.hepatic_bands[-1].transaminase_max_x_uln
        limit_b = kb.hepatic_bands[-1].bilirubin_max_x_uln
    else:  # name every value above the no-reduction row
        limit_t = kb.hepatic_bands[0].transaminase_max_x_uln
        limit_b = kb.hepatic_bands[0].bilirubin_max_x_uln
    keys: list[str] = [k for k in ("ast", "alt") if k in g.values and g.values[k].above(limit_t)]
    if "bilirubin" in g.values and not g.gilbert and g.values["bilirubin"].above(limit_b):
        keys.append("bilirubin")
    stale = _stale_suffix(facts, kb, g.values, keys)
    lines = [
        _value_line(facts, kb, g.values[k], gilbert_excluded=(k == "bilirubin" and g.gilbert))
        for k in LIVER
        if k in g.values
    ]
    if g.missing:
        lines.append(
            f"- Not on record or unusable: {', '.join(LAB_NAMES[k] for k in g.missing)}; graded on the "
            "others, so the band may be worse."
        )
    if g.gilbert:
        lines.append("- Gilbert's syndrome is recorded: bilirubin is excluded from the table's criteria [L §2.4].")
    table = (
        "**Label table (monotherapy, first course) [L §2.4]:** AST and ALT ≤ 2.5 x ULN and bilirubin ≤ 1 x ULN: "
        "40 mg/m2; AST and ALT ≤ 10 x ULN and bilirubin ≤ 1.5 x ULN: 32 mg/m2; AST and ALT ≤ 10 x ULN and "
        "bilirubin > 1.5 to ≤ 3 x ULN: 20 mg/m2, up to 30 mg/m2 if tolerated; AST or ALT > 10 x ULN or "
        "bilirubin > 3 x ULN: not recommended."
    )
    if g.band is None:
        summary = f"{_trigger_text(g.values, keys)}{stale}: ixabepilone not recommended (hepatic impairment)"
        lines += ["", table, "", "**What to do:** do not give ixabepilone; review liver function."]
        yield Draft("critical",
            summary,
            "\n".join(lines),
            source=kb.hepatic_beyond.source,
            section=kb.hepatic_beyond.section,
            suggestions=delete_orders(facts),
        )
        return
    dose = g.band.dose_mg_per_m2  # [L §2.4 Table]
    adjusted, _ = adjusted_dose(facts, kb)
    note = ""
    if adjusted < dose:
        note = f" A strong CYP3A4 inhibitor is also present: the suggestion uses {num(adjusted)} mg/m2 [L §7]."
    summary = f"{_trigger_text(g.values, keys)}{stale}: reduce ixabepilone to {num(dose)} mg/m2 (hepatic table)"
    lines += [
        "",
        table,
        "",
        f"**What to do:** give {g.band.dose_text} [{g.band.source} {g.band.section}].{note}",
    ]
    yield Draft("warning",
        summary,
        "\n".join(lines),
        source=g.band.source,
        section=g.band.section,
        suggestions=reduce_orders(facts, adjusted, "hepatic impairment, label §2.4"),
    )


@rule("hepatic-impairment-condition")
def hepatic_impairment_condition(facts: PatientFacts, kb: Knowledge) -> Iterator[Draft | Finding]:
    """Liver disease is recorded but there are no current liver tests to grade it [L §2.4]."""
    if not facts.liver_disease or not facts.known("labs"):
        return  # without the labs at all, check-unavailable says so; "no current AST" would be untrue
    not_fresh = [k for k in LIVER if not is_fresh(facts, facts.labs.get(k), kb)]
    if not not_fresh:
        return
    days = int(window(kb, "ast").value)  # [project setting] 14 d
    condition = facts.liver_disease[0].label
    summary = f"{condition} on record, no current {', '.join(LAB_NAMES[k] for k in not_fresh)}: dose cannot be graded"
    lines = [
        f"- {escape_md(e.label)}" + (f", {e.date:%Y-%m-%d}" if e.date else "")
        + (f", {escape_md(e.ref)}" if e.ref else "")
        for e in facts.liver_disease
    ]
    for k in not_fresh:
        lab = facts.labs.get(k)
        if lab is None:
            lines.append(f"- {LAB_NAMES[k]}: none on record")
        elif lab.value is None:
            lines.append(f"- {LAB_NAMES[k]}: latest result unusable ({escape_md(lab.problem or 'no value')})")
        else:
            lines.append(f"- {LAB_NAMES[k]}: latest {lab_text(facts, lab)}, outside the {days}-day window")
    lines += [
        "",
        "**Label:** the monotherapy dose depends on AST, ALT and bilirubin (40, 32 or 20 mg/m2, or not "
        "recommended) [L §2.4]; with capecitabine, raised values are a contraindication [L §4].",
        "",
        f"**What to do:** order AST, ALT and total bilirubin and review them before dosing "
        f"(window {days} d {window(kb, 'ast').cite()}).",
    ]
    yield Draft("warning", summary, "\n".join(lines))
