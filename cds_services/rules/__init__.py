"""The clinical rules: PatientFacts in, Findings out.

Each rule is ``(facts, kb) -> Iterable[Finding]`` and yields at most one
finding (one card listing everything that triggered it). :func:`evaluate`
runs them all; a rule that raises is logged and reported on the
check-unavailable card while the others still answer, because a missing card
must never be read as "safe".
"""
from __future__ import annotations

import logging
from typing import Iterable

from cds_services.findings import Finding
from cds_services.knowledge import Knowledge
from fhir_mappings.facts import PatientFacts

from .assess import ixabepilone_regimen
from .blood_counts import neutrophils_low, platelets_low
from .common import LAB_NAMES, Rule, clip, make, unavailable
from .dose import dose_check
from .hepatic import hepatic_combination, hepatic_impairment_condition, hepatic_monotherapy
from .hypersensitivity import hypersensitivity
from .interactions import cyp3a4_other, cyp3a4_strong_inducer, cyp3a4_strong_inhibitor
from .labs_missing import labs_missing
from .premedication import premedication_missing
from .recent_events import live_vaccine, neuropathy_risk, radiation_recall
from .reproductive import breastfeeding, pregnancy

__all__ = ["RULES", "evaluate"]

log = logging.getLogger(__name__)

UNAVAILABLE = "check-unavailable"
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


def _data_problems(facts: PatientFacts, kb: Knowledge, labs: bool = True) -> Iterable[Finding]:
    for key, lab in (facts.labs.items() if labs else ()):
        if lab.value is None:
            name = LAB_NAMES.get(key, key)
            where = f" ({lab.ref})" if lab.ref else ""
            raw = f" recorded as '{lab.raw}'" if lab.raw else ""
            yield unavailable(kb, f"{name} unusable", f"latest {name}{where}{raw}: {lab.problem or 'no value'}")
    for problem in facts.problems:
        yield unavailable(kb, "record unreadable", problem)


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
    return make(kb, UNAVAILABLE, "info", clip(summary), detail)


def unreadable_order(problems: Iterable[str], kb: Knowledge) -> list[Finding]:
    """The check-unavailable card when the ixabepilone order itself could not be read: no check ran."""
    items = [unavailable(kb, "ixabepilone order unreadable", p) for p in problems]
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
    findings.extend(_data_problems(facts, kb, labs=not regimen))
    missing = [f for f in findings if f.rule == UNAVAILABLE]
    rest = [f for f in findings if f.rule != UNAVAILABLE]
    if missing:
        rest.append(_merge_unavailable(missing, kb))
    return sorted(rest, key=lambda f: SEVERITY[f.indicator])
