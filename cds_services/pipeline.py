"""One hook call, from a validated request to cards.

The order matters for speed and for the EHR's patience: first decide from the
draft orders alone whether there is an ixabepilone order to act on (most
order-select calls are for other drugs and end here, without touching the
FHIR server, unless a draft names its drug only by a Medication the server
holds); only then gather the record, map it to facts, and run the rules.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_mappings import build_facts
from fhir_mappings.drugs import IXABEPILONE, drugs_of, exposure_of, may_name_drug, medication_of
from fhir_mappings.facts import PatientFacts
from fhir_mappings.references import reference_of
from fhir_mappings.resources import parse_resources, resources_from_bundle
from fhir_mappings.status import ordered_live_vaccine

from .cards import build_cards
from .catalog import ORDER_SELECT, prefetch_templates
from .fhir_client import FhirClient
from .findings import Finding
from .knowledge import Knowledge
from .prefetch import draft_medications, gather
from .protocol import HookRequest
from .rules import evaluate, unreadable_order


@dataclass(frozen=True)
class HookResult:
    cards: list[dict[str, Any]]
    findings: list[Finding]


@dataclass(frozen=True)
class Scope:
    """What a hook call checks.

    ``orders``: references of the ixabepilone drafts to check with every rule.
    ``triggers``: with no ixabepilone draft in scope, the drafts (a strong
    CYP3A4 inhibitor or inducer, a live vaccine) to check against an
    ixabepilone course already in the record (issue 12 item 6).
    """

    orders: frozenset[str]
    triggers: frozenset[str] = frozenset()


def _regimen_trigger(order: Any, ids: frozenset[str], medications: dict[str, Any], strong: frozenset[str],
                     premedication: str) -> bool:
    """A draft that matters to a patient on ixabepilone: a systemic strong CYP3A4 drug, or a live vaccine.

    A draft of the corticosteroid premedication alone (dexamethasone, also a listed inducer) is the
    premedication, not chronic induction [L §7], so it is not one.
    """
    medication = medication_of(order, medications)
    if ordered_live_vaccine(order, medication, "draft order") is not None:
        return True
    hit = ids & strong
    if not hit or hit == {premedication}:
        return False
    exposure, _ = exposure_of(order, medication)
    return exposure != "local"


def orders_in_scope(
    request: HookRequest, drafts: list[Any], medications: dict[str, Any], kb: Knowledge,
) -> Scope | None:
    """What to check, or None when there is nothing to do.

    order-sign: every ixabepilone draft. order-select: the selected
    ixabepilone drafts; or, when the selection is a drug that interacts with
    ixabepilone, every ixabepilone draft already on the order list. With no
    ixabepilone draft at all: the strong CYP3A4 inhibitors/inducers
    and live vaccines among the drafts (order-sign) or the selection
    (order-select), to be checked against an ixabepilone course in the record.
    """
    interacting = kb.interacting_drugs
    strong = kb.drugs_of_class("strong-inhibitor", "strong-inducer")
    steroid = kb.premedication.corticosteroid.drug
    ixabepilone: set[str] = set()
    triggers: set[str] = set()
    interacting_selected = False
    selected = set(request.selections)
    for order in drafts:
        ids, _, _ = drugs_of(order, medications)
        ref = reference_of(order) or f"#{id(order)}"
        if IXABEPILONE in ids:
            ixabepilone.add(ref)
            continue
        if ref in selected and ids & interacting:
            interacting_selected = True
        in_view = request.hook != ORDER_SELECT or ref in selected
        if in_view and _regimen_trigger(order, ids, medications, strong, steroid):
            triggers.add(ref)
    if not ixabepilone:
        return Scope(frozenset(), frozenset(triggers)) if triggers else None
    if request.hook != ORDER_SELECT:
        return Scope(frozenset(ixabepilone))
    chosen = ixabepilone & selected
    if chosen:
        return Scope(frozenset(chosen))
    return Scope(frozenset(ixabepilone)) if interacting_selected else None


def in_scope(facts: PatientFacts, scope: Scope, hook: str) -> PatientFacts:
    """The facts narrowed to what this call checks, with the hook (order-select reports an unfinished dose
    less loudly, issue 12 item 7)."""
    if scope.orders:
        orders = tuple(o for o in facts.orders if o.ref is None or o.ref in scope.orders)
        return dataclasses.replace(facts, orders=orders, hook=hook)
    unnamed = any(t.startswith("#") for t in scope.triggers)
    drafts = tuple(d for d in facts.draft_orders if d.ref in scope.triggers or (d.ref is None and unnamed))
    return dataclasses.replace(facts, orders=(), draft_orders=drafts, hook=hook)


def run_hook(
    request: HookRequest,
    kb: Knowledge,
    client: FhirClient,
    now: Callable[[], datetime],
    *,
    allowed_servers: tuple[str, ...] = (),
    allow_http: bool = False,
    fhir_deadline: float | None = None,
    max_depth: int | None = None,
) -> HookResult:
    """Cards for one hook call; ``fhir_deadline`` (seconds) bounds all of its FHIR reads together."""
    deadline = time.monotonic() + fhir_deadline if fhir_deadline is not None else None
    draft_raw = resources_from_bundle(request.draft_orders)
    # A draft that names its drug only by a Medication on the EHR's server: read it (one search), else the
    # draft's drug, ixabepilone or not, cannot be told.
    fetched, fetch_problems = draft_medications(
        request, draft_raw, client, allowed_servers=allowed_servers, allow_http=allow_http, deadline=deadline
    )
    parsed_drafts, draft_problems = parse_resources(draft_raw + fetched, request.patient_id)
    draft_problems = fetch_problems + draft_problems
    medications = {
        ref: r for r in parsed_drafts if r.get_resource_type() == "Medication" and (ref := reference_of(r))
    }
    drafts = [r for r in parsed_drafts if r.get_resource_type() != "Medication"]
    scope = orders_in_scope(request, drafts, medications, kb)
    if scope is None:
        # An ixabepilone draft we could not read must not turn into silence: say so.
        parsed_refs = {f"{r.get_resource_type()}/{r.id}" for r in parsed_drafts if r.id}
        lost = [raw for raw in draft_raw if isinstance(raw, dict)
                and f"{raw.get('resourceType')}/{raw.get('id')}" not in parsed_refs
                and may_name_drug(raw, IXABEPILONE)]
        if lost and draft_problems:
            findings = unreadable_order(draft_problems, kb)
            return HookResult(cards=build_cards(findings, kb), findings=findings)
        return HookResult(cards=[], findings=[])

    gathered = gather(
        request, prefetch_templates(), client, allowed_servers=allowed_servers, allow_http=allow_http, deadline=deadline
    )
    moment = now()  # one "now" for the whole call: parsing skips results older than the newest
    record, record_problems = parse_resources(gathered.resources, request.patient_id, now=moment, record=True,
                                              max_depth=max_depth)
    facts = build_facts(
        record + list(medications.values()),
        drafts,
        request.patient_id,
        moment,
        problems=draft_problems + gathered.problems + record_problems,
        unavailable=gathered.unavailable,
    )
    facts = in_scope(facts, scope, request.hook)
    findings = evaluate(facts, kb)
    return HookResult(cards=build_cards(findings, kb), findings=findings)
