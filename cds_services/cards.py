"""Findings to CDS Hooks 2.0 cards.

The spec forbids null and empty values other than an empty ``cards`` array
(requirement 3), so every optional field is added only when it has content.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from .findings import Action, Finding, Suggestion
from .knowledge import Knowledge

OVERRIDE_REASON_SYSTEM = "urn:ixabepilone-cds:override-reason"
SUMMARY_LIMIT = 140  # CDS Hooks 2.0 card summary: "<140 characters"


def clip(summary: str) -> str:
    """The summary within the spec's limit, however many drugs a rule lists: cut at the limit, without a
    dangling separator, and marked with an ellipsis."""
    return summary if len(summary) < SUMMARY_LIMIT else summary[: SUMMARY_LIMIT - 2].rstrip(" ,;:") + "…"


def _action(action: Action) -> dict[str, Any]:
    out: dict[str, Any] = {"type": action.type, "description": action.description}
    if action.resource:
        out["resource"] = dict(action.resource)
    if action.resource_id:
        out["resourceId"] = action.resource_id
    return out


def _suggestion(suggestion: Suggestion, new_uuid: Callable[[], str]) -> dict[str, Any]:
    out: dict[str, Any] = {"label": suggestion.label, "uuid": new_uuid()}
    if suggestion.is_recommended:
        out["isRecommended"] = True
    if suggestion.actions:
        out["actions"] = [_action(a) for a in suggestion.actions]
    return out


def build_card(finding: Finding, kb: Knowledge, new_uuid: Callable[[], str] | None = None) -> dict[str, Any]:
    """One card; ``kb`` supplies the source label/url and the rule code system."""
    new_uuid = new_uuid or (lambda: str(uuid.uuid4()))
    source = kb.sources[finding.source]
    label = source.label if not finding.section else f"{source.label}, {finding.section}"
    card_source: dict[str, Any] = {
        "label": label,
        "topic": {
            "system": kb.code_system,
            "code": finding.rule,
            "display": kb.rule_display(finding.rule),
        },
    }
    if source.url:
        card_source["url"] = source.url
    card: dict[str, Any] = {
        "uuid": new_uuid(),
        "summary": clip(finding.summary),
        "indicator": finding.indicator,
        "source": card_source,
    }
    if finding.detail:
        card["detail"] = finding.detail
    if finding.suggestions:
        card["suggestions"] = [_suggestion(s, new_uuid) for s in finding.suggestions]
        card["selectionBehavior"] = finding.selection_behavior
    if finding.override_reasons:
        card["overrideReasons"] = [
            {"system": OVERRIDE_REASON_SYSTEM, "code": code, "display": display}
            for code, display in finding.override_reasons
        ]
    return card


def build_cards(findings: Iterable[Finding], kb: Knowledge) -> list[dict[str, Any]]:
    return [build_card(finding, kb) for finding in findings]
