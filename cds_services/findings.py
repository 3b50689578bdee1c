"""What a rule concludes, before it becomes a CDS Hooks card.

Rules return :class:`Finding` objects; :mod:`cds_services.cards` turns them
into spec-shaped JSON (uuids, source, topic). Keeping the two apart means the
rules never touch JSON shapes and the card builder never touches clinical logic.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# CDS Hooks 2.0 card indicator, mildest first.
Indicator = Literal["info", "warning", "critical"]


@dataclass(frozen=True)
class Action:
    """A CDS Hooks suggestion action: create, update or delete a resource."""

    type: str  # "create" | "update" | "delete"
    description: str
    resource: Mapping[str, Any] | None = None  # for create / update
    resource_id: str | None = None  # for delete, e.g. "MedicationRequest/123"


@dataclass(frozen=True)
class Suggestion:
    label: str
    actions: tuple[Action, ...] = ()
    is_recommended: bool = False


@dataclass(frozen=True)
class Finding:
    """One card's worth of conclusion from one rule.

    ``source`` is a key of the knowledge base's sources (e.g. "L" for the FDA
    label); ``section`` names the part of it (e.g. "§4 Contraindications") and
    is shown in the card's source label.
    """

    rule: str  # the public rule code, e.g. "platelets-low"
    indicator: Indicator
    summary: str  # < 140 characters
    detail: str  # markdown, shows the triggering data
    source: str = "L"
    section: str | None = None
    suggestions: tuple[Suggestion, ...] = ()
    selection_behavior: str = "at-most-one"  # used only when suggestions exist
    override_reasons: tuple[tuple[str, str], ...] = field(default=())  # (code, display)
