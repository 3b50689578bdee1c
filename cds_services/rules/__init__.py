"""The clinical rules: PatientFacts in, Findings out.

Each rule is ``(facts, kb) -> Iterable[Finding]`` and yields at most one
finding (one card listing everything that triggered it). :func:`evaluate`
runs them all; a rule that raises is logged and reported on the
check-unavailable card while the others still answer, because a missing card
must never be read as "safe".
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from cds_services.findings import Finding
from cds_services.knowledge import Knowledge
from fhir_mappings.facts import PatientFacts

from .assess import ixabepilone_regimen
from .blood_counts import neutrophils_low, platelets_low
from .common import LAB_NAMES, UNAVAILABLE, Draft, Rule, day, escape_md, make, unavailable
from .dose import dose_check
from .hepatic import hepatic_combination, hepatic_impairment_condition, hepatic_monotherapy
from .hypersensitivity import hypersensitivity
from .interactions import cyp3a4_other, cyp3a4_strong_inducer, cyp3a4_strong_inhibitor
from .labs_missing import labs_missing
from .neuropathy import neuropathy_risk
from .premedication import premedication_missing
from .radiation import radiation_recall
from .reproductive import breastfeeding, pregnancy
from .vaccines import live_vaccine

__all__ = ["RULES", "RULE_CODES", "UNAVAILABLE", "evaluate"]

log = logging.getLogger(__name__)

SEVERITY = {"critical": 0, "warning": 1, "info": 2}

# The registry. evaluate() reads it at call time, so tests can add a rule.
RULES: list[Rule] = [
    neutrophils_low,
    platelets_low,
    hepatic_combination,
    hepatic_monotherapy,
    hepatic_impairment_condition,
    hypersensitivity,
    pregnancy,
    breastfeeding,
    cyp3a4_strong_inhibitor,
    cyp3a4_strong_inducer,
    cyp3a4_other,
    labs_missing,
    dose_check,
    premedication_missing,
    radiation_recall,
    live_vaccine,
    neuropathy_risk,
]

# A patient already on ixabepilone, and the order being written is not ixabepilone but interacts with it
# (issue 12 item 6): only the rules about that order run.
REGIMEN_RULES: list[Rule] = [
    cyp3a4_strong_inhibitor,
    cyp3a4_strong_inducer,
    live_vaccine,
]

# Every card code the service can answer with: the registry's, and the engine's own. The knowledge
# file must describe exactly these (check_knowledge, at start).
RULE_CODES: frozenset[str] = frozenset(r.code for r in RULES) | {UNAVAILABLE}


def _codes(*checks: Rule) -> tuple[str, ...]:
    return tuple(r.code for r in checks)


# Which checks read which kind of record data (facts.DATA_KINDS, one prefetch key each): when a
# kind cannot be had, the check-unavailable card names the checks that went without it.
CHECKS_BY_DATA: dict[str, tuple[str, ...]] = {
    "patient": _codes(hepatic_combination, hepatic_monotherapy),  # age/sex-specific reference ranges
    "medicationRequests": _codes(cyp3a4_strong_inhibitor, cyp3a4_strong_inducer, cyp3a4_other,
                                 hepatic_combination, premedication_missing, live_vaccine),
    "medicationStatements": _codes(cyp3a4_strong_inhibitor, cyp3a4_strong_inducer, cyp3a4_other,
                                   hepatic_combination, premedication_missing),
    "labs": _codes(neutrophils_low, platelets_low, hepatic_combination, hepatic_monotherapy,
                   hepatic_impairment_condition, labs_missing),
    "vitals": _codes(dose_check, neutrophils_low),  # BSA; fever
    "reproductive": _codes(pregnancy, breastfeeding),
    "conditions": _codes(pregnancy, breastfeeding, hepatic_monotherapy, hepatic_impairment_condition,
                         neuropathy_risk),
    "allergies": _codes(hypersensitivity),
    "procedures": _codes(radiation_recall),
    "immunizations": _codes(live_vaccine),
}


def _data_problems(facts: PatientFacts, kb: Knowledge, ran: frozenset[str], labs: bool = True) -> Iterable[Finding]:
    """Data the rules that ran (``ran``, their codes) could not use; with ``labs`` False the lab lines are left out."""
    for kind, why in facts.unavailable.items():
        weakened = [code for code in CHECKS_BY_DATA.get(kind, ()) if code in ran]
        if not weakened:
            continue
        checks = ", ".join(kb.rule_display(code) for code in weakened)
        yield unavailable(kb, f"{kind} not read",
                          f"prefetch.{kind} could not be had ({escape_md(why)}); "
                          f"checks that went without it: {checks}.")
    for key, lab in (facts.labs.items() if labs else ()):
        name = LAB_NAMES.get(key, key)
        if lab.value is None:
            where = f" ({escape_md(lab.ref)})" if lab.ref else ""
            raw = f" recorded as '{escape_md(lab.raw)}'" if lab.raw and not lab.raw.startswith("(") else ""
            yield unavailable(kb, f"{name} unusable",
                              f"latest {name}{where}{raw}: {escape_md(lab.problem or 'no value')}")
        elif (newer := lab.newer_unusable) is not None:
            where = f" ({escape_md(newer.ref)})" if newer.ref else ""
            yield unavailable(
                kb, f"newest {name} unusable",
                f"the newest {name}{where} of {day(newer.effective)} could not be used "
                f"({escape_md(newer.problem or 'no value')}); the checks used the one of {day(lab.effective)}"
                + (f" ({escape_md(lab.ref)})" if lab.ref else "") + ".",
            )
    for problem in facts.problems:
        yield unavailable(kb, "record not fully read", escape_md(problem))


def _merge_unavailable(items: list[Finding], kb: Knowledge) -> Finding:
    shorts = list(dict.fromkeys(f.summary for f in items))
    summary = f"Could not check: {'; '.join(shorts)}"
    detail = "\n".join(
        [
            "These checks could not run or could not use the data below. **No card does not mean safe** for them:",
            "",
            *(f.detail for f in items),
        ]
    )
    return make(kb, UNAVAILABLE, Draft("info", summary, detail))


def unreadable_order(problems: Iterable[str], kb: Knowledge) -> list[Finding]:
    """The check-unavailable card when the ixabepilone order itself could not be read: no check ran."""
    items = [unavailable(kb, "ixabepilone order unreadable", escape_md(p)) for p in problems]
    return [_merge_unavailable(items, kb)] if items else []


def evaluate(facts: PatientFacts, kb: Knowledge) -> list[Finding]:
    """Run every rule; critical, then warning, then info (stable within a level).

    With ixabepilone drafts (``facts.orders``): every rule. Without, but with
    draft orders and an ixabepilone course in the record: the interaction and
    live-vaccine rules about those drafts (a patient already on ixabepilone).
    Otherwise there is nothing to check.
    """
    if facts.orders:
        rules, regimen = RULES, False
    elif facts.draft_orders and ixabepilone_regimen(facts, kb):
        rules, regimen = REGIMEN_RULES, True
    else:
        return []  # no ixabepilone order and no ixabepilone course: nothing to check
    findings: list[Finding] = []
    for rule in rules:
        code = getattr(rule, "code", getattr(rule, "__name__", repr(rule)))
        try:
            findings.extend(rule(facts, kb))
        except Exception as exc:  # one broken rule must not silence the others
            log.exception("rule %s failed", code)
            findings.append(
                unavailable(
                    kb,
                    f"{code} check failed",
                    f"the {kb.rule_display(code) if code in kb.rules else code} check stopped with an internal "
                    f"error ({type(exc).__name__}); review this risk by hand.",
                )
            )
    findings.extend(_data_problems(facts, kb, frozenset(getattr(r, "code", "") for r in rules), labs=not regimen))
    missing = [f for f in findings if f.rule == UNAVAILABLE]
    rest = [f for f in findings if f.rule != UNAVAILABLE]
    if missing:
        rest.append(_merge_unavailable(missing, kb))
    return sorted(rest, key=lambda f: SEVERITY[f.indicator])
