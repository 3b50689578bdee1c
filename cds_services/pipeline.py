"""One hook call, from a validated request to cards.

The order matters for speed and for the EHR's patience: first decide from the
draft orders alone whether there is an ixabepilone order to act on (most
order-select calls are for other drugs and end here, without touching the
FHIR server); only then gather the record, map it to facts, and run the rules.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from fhir_mappings import build_facts
from fhir_mappings.drugs import drugs_of, may_name_drug
from fhir_mappings.resources import parse_resources, resources_from_bundle

from .cards import build_cards
from .catalog import ORDER_SELECT, prefetch_templates
from .fhir_client import FhirClient
from .findings import Finding
from .prefetch import gather
from .protocol import HookRequest
from .rules import evaluate, unreadable_order

IXABEPILONE = "ixabepilone"


@dataclass(frozen=True)
class HookResult:
    cards: list[dict[str, Any]]
    findings: list[Finding]


def _reference(resource: Any) -> str | None:
    rid = getattr(resource, "id", None)
    return f"{resource.get_resource_type()}/{rid}" if rid else None


def orders_in_scope(
    request: HookRequest, drafts: list[Any], medications: dict[str, Any], interacting: frozenset[str]
) -> set[str] | None:
    """References of the ixabepilone drafts to check, or None when there is nothing to do.

    order-sign: every ixabepilone draft. order-select: the selected
    ixabepilone drafts; or, when the selection is a drug that interacts with
    ixabepilone, every ixabepilone draft already on the order list.
    """
    ixabepilone: set[str] = set()
    interacting_selected = False
    selected = set(request.selections)
    for order in drafts:
        ids, _, _ = drugs_of(order, medications)
        ref = _reference(order) or f"#{id(order)}"
        if IXABEPILONE in ids:
            ixabepilone.add(ref)
        elif ref in selected and ids & interacting:
            interacting_selected = True
    if not ixabepilone:
        return None
    if request.hook != ORDER_SELECT:
        return ixabepilone
    chosen = ixabepilone & selected
    if chosen:
        return chosen
    return ixabepilone if interacting_selected else None


def run_hook(
    request: HookRequest,
    kb: Any,
    client: FhirClient,
    now: Callable[[], datetime],
    allowed_servers: tuple[str, ...] = (),
    allow_http: bool = False,
    fhir_deadline: float | None = None,
) -> HookResult:
    """Cards for one hook call; ``fhir_deadline`` (seconds) bounds all of its FHIR reads together."""
    deadline = time.monotonic() + fhir_deadline if fhir_deadline is not None else None
    draft_raw = resources_from_bundle(request.draft_orders)
    parsed_drafts, draft_problems = parse_resources(draft_raw, request.patient_id)
    medications = {
        ref: r for r in parsed_drafts if r.get_resource_type() == "Medication" and (ref := _reference(r))
    }
    drafts = [r for r in parsed_drafts if r.get_resource_type() != "Medication"]
    scope = orders_in_scope(request, drafts, medications, kb.interacting_drugs)
    if scope is None:
        # An ixabepilone draft we could not read must not turn into silence: say so.
        parsed_refs = {f"{r.get_resource_type()}/{r.id}" for r in parsed_drafts if r.id}
        lost = [raw for raw in draft_raw if isinstance(raw, dict)
                and f"{raw.get('resourceType')}/{raw.get('id')}" not in parsed_refs and may_name_drug(raw, "ixabepilone")]
        if lost and draft_problems:
            findings = unreadable_order(draft_problems, kb)
            return HookResult(cards=build_cards(findings, kb), findings=findings)
        return HookResult(cards=[], findings=[])

    gathered = gather(request, prefetch_templates(), client, allowed_servers, allow_http, deadline)
    moment = now()  # one "now" for the whole call: parsing skips results older than the newest
    record, record_problems = parse_resources(gathered.resources, request.patient_id, now=moment, record=True)
    facts = build_facts(
        record + list(medications.values()),
        drafts,
        request.patient_id,
        moment,
        problems=draft_problems + gathered.problems + record_problems,
        unavailable=gathered.unavailable,
    )
    facts = dataclasses.replace(
        facts, orders=tuple(o for o in facts.orders if o.ref is None or o.ref in scope)
    )
    findings = evaluate(facts, kb)
    return HookResult(cards=build_cards(findings, kb), findings=findings)
