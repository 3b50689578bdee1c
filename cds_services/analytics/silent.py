"""Silent mode: rules that compute and log their cards but leave them out of the response.

Hospitals switch a new rule on silently first, to measure its alert burden
before clinicians see it, and CDS committees silence a rule they judge too
noisy while they rework it. ``CDS_SILENT_RULES`` lists the rule codes (or
``*`` for every rule). This is one small step after the cards are built, so
the clinical pipeline is the same whether a rule is silent or not: the cards
are computed as usual, the silent ones are logged (and counted as "would have
fired" in the analytics) and only the others are returned.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from ..config import SILENT_ALL, ConfigError


def rule_code(card: Mapping[str, Any]) -> str | None:
    """A card's rule code: ``source.topic.code`` (README, Rule codes)."""
    source = card.get("source")
    topic = source.get("topic") if isinstance(source, Mapping) else None
    code = topic.get("code") if isinstance(topic, Mapping) else None
    return code if isinstance(code, str) else None


def is_silent(code: str | None, silent_rules: tuple[str, ...]) -> bool:
    return bool(silent_rules) and (SILENT_ALL in silent_rules or code in silent_rules)


def split_silent(
    cards: Iterable[Mapping[str, Any]], silent_rules: tuple[str, ...]
) -> tuple[list[Any], list[Any]]:
    """(returned, silent): the cards in their order, split by rule code."""
    returned: list[Any] = []
    silent: list[Any] = []
    for card in cards:
        (silent if is_silent(rule_code(card), silent_rules) else returned).append(card)
    return returned, silent


def apply_silent_mode(result: Any, silent_rules: tuple[str, ...]) -> tuple[Any, list[Any]]:
    """The hook result with silent rules' cards (and findings) removed, and those cards.

    ``result`` is the pipeline's HookResult (a dataclass with ``cards`` and
    ``findings``); the audit log reads both, so both lose the silent rules.
    """
    if not silent_rules:
        return result, []
    returned, silent = split_silent(result.cards, silent_rules)
    if not silent:
        return result, []
    findings = [f for f in result.findings if not is_silent(f.rule, silent_rules)]
    return dataclasses.replace(result, cards=returned, findings=findings), silent


def check_silent_rules(silent_rules: tuple[str, ...], known: Iterable[str]) -> None:
    """Refuse to start on a code no rule has: a typo would leave a noisy rule loud, silently."""
    known = sorted(known)
    unknown = [code for code in silent_rules if code != SILENT_ALL and code not in known]
    if unknown:
        raise ConfigError(
            f"CDS_SILENT_RULES: unknown rule code(s) {', '.join(unknown)}; "
            f"known: {', '.join(known)} (or * for all)"
        )
