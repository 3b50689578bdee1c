"""The CDS Hooks endpoints: discovery, service calls, feedback.

Thin views: each parses, calls one function, serialises. Clinical logic lives
in the rules; FHIR access in :mod:`cds_services.prefetch`.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from .catalog import discovery_document, find_service
from .errors import NotFound
from .feedback import parse_feedback
from .pipeline import run_hook
from .protocol import parse_hook_request, read_json
from .runtime import runtime

bp = Blueprint("cds", __name__)


def _service_or_404(service_id: str):
    service = find_service(service_id)
    if service is None:
        raise NotFound(f"no CDS service with id {service_id!r}; see GET /cds-services")
    return service


def _body() -> object:
    cds = runtime()
    return read_json(request.content_type, request.get_data(cache=True), cds.settings.max_json_depth)


@bp.get("/cds-services")
def discovery() -> ResponseReturnValue:
    cds = runtime()
    return jsonify(discovery_document(cds.kb.version, {k: s.url for k, s in cds.kb.sources.items()}))


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str) -> ResponseReturnValue:
    service = _service_or_404(service_id)
    hook_request = parse_hook_request(_body(), service)
    cds = runtime()
    result = run_hook(
        hook_request, cds.kb, cds.fhir, cds.clock,
        cds.settings.fhir_servers, cds.settings.allow_http_fhir,
    )
    request.environ["cds.result"] = result  # for the audit log
    return jsonify({"cards": result.cards})


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> ResponseReturnValue:
    service = _service_or_404(service_id)
    items = parse_feedback(_body())
    runtime().feedback.add(service.id, items, client_iss=request.environ.get("cds.client_iss"))
    return jsonify({"stored": len(items)})


@bp.get("/healthz")
def health() -> ResponseReturnValue:
    cds = runtime()
    return jsonify({"status": "ok", "knowledgeVersion": cds.kb.version})
