"""The CDS Hooks endpoints: discovery, service calls, feedback.

Thin views: each parses, calls one function, serialises. Clinical logic lives
in the rules; FHIR access in :mod:`cds_services.prefetch`.
"""
from __future__ import annotations

import logging
import time
from http import HTTPStatus

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

# gunicorn (a runtime dependency) raises its own parse errors from wsgi.input (a malformed chunk), not OSError.
from gunicorn.http.errors import ParseException as _ServerBodyError
from werkzeug.exceptions import ClientDisconnected

from .analytics import apply_silent_mode, record_served
from .catalog import Service, discovery_document, find_service
from .errors import BadRequest, NotFound, Unauthorized
from .feedback import parse_feedback
from .pipeline import run_hook
from .protocol import parse_hook_request, read_json
from .runtime import Runtime, runtime
from .schemas import load_schema
from .security.audit import AUDIT_LOGGER, audit_record, log_audit
from .security.tokens import AuthError

bp = Blueprint("cds", __name__)
audit_log = logging.getLogger(AUDIT_LOGGER)

# Set on wsgi.input by gunicorn.conf.py's pre_request hook: gunicorn drops a
# Connection header set by the application, so this is how we ask it to close.
CLOSE_CONNECTION_HOOK = "cds_close_connection"
_BODY_READ = "cds.body_read"


@bp.before_request
def _authenticate() -> None:
    """Service and feedback calls carry the EHR's signed JWT (spec 2.0 §trusting-cds-clients).

    Discovery stays open, as the spec allows; CORS preflight never reaches
    here. The reason for a refusal goes to the log, never to the caller.
    """
    request.environ["cds.started"] = time.perf_counter()
    cds = runtime()
    if request.method != "POST" or cds.verifier is None:
        return
    # Never the request's Host header: the factory refuses to start with
    # authentication on and no CDS_PUBLIC_BASE_URL.
    audience = f"{cds.settings.public_base_url}{request.path}"
    try:
        identity = cds.verifier.verify(request.headers.get("Authorization"), audience)
    except AuthError:
        raise Unauthorized("authentication required") from None
    request.environ["cds.identity"] = identity
    request.environ["cds.client_iss"] = identity.iss


@bp.after_request
def _audit(response: Response) -> Response:
    """One JSON line per hook or feedback call (fields: cds_services/security/audit.py)."""
    if request.method != "POST" or not request.view_args:
        return response
    result = request.environ.get("cds.result")
    identity = request.environ.get("cds.identity")
    body = request.environ.get("cds.body")  # set by _body() once the JSON was read safely
    body = body if isinstance(body, dict) else {}
    context = context if isinstance(context := body.get("context"), dict) else {}
    started = request.environ.get("cds.started", time.perf_counter())
    log_audit(audit_log, audit_record(
        event="feedback" if request.path.endswith("/feedback") else "hook",
        service_id=request.view_args.get("service_id"),
        hook_instance=body.get("hookInstance") if isinstance(body.get("hookInstance"), str) else None,
        iss=getattr(identity, "iss", None),
        tenant=getattr(identity, "tenant", None),
        jti=getattr(identity, "jti", None),
        rule_codes=[f.rule for f in result.findings] if result else [],
        indicators=[f.indicator for f in result.findings] if result else [],
        card_count=len(result.cards) if result else 0,
        latency_ms=round((time.perf_counter() - started) * 1000, 1),
        status=response.status_code,
        outcome="ok" if response.status_code < HTTPStatus.BAD_REQUEST else "error",
        patient_id=context.get("patientId") if isinstance(context.get("patientId"), str) else None,
    ))
    return response


@bp.after_app_request
def _http_hygiene(response: Response) -> Response:
    """Headers every service and feedback answer needs, errors included.

    ``Cache-Control: no-store`` (and HTTP/1.0's ``Pragma: no-cache``): cards
    carry patient data, which no browser or proxy cache may keep (RFC 9111
    §5.2.2.5). ``Connection: close`` when the request body was not read to its
    end (refused before reading, too large, malformed): the unread bytes are
    still on the connection, and gunicorn drains at most 64 KiB before giving
    up on it, so promising keep-alive would break the client's next call.
    """
    if request.path.startswith("/cds-services/"):
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    if _has_unread_body():
        close = getattr(request.environ.get("wsgi.input"), CLOSE_CONNECTION_HOOK, None)
        if close is not None:
            close()
    return response


def _has_unread_body() -> bool:
    if request.environ.get(_BODY_READ):
        return False
    if request.content_length:
        return True
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _service_or_404(service_id: str) -> Service:
    service = find_service(service_id)
    if service is None:
        raise NotFound(f"no CDS service with id {service_id!r}; see GET /cds-services")
    return service


def _body(lazy: str | None = None) -> object:
    cds = runtime()
    try:
        data = request.get_data(cache=True)
    except _ServerBodyError:
        # Only an authenticated caller gets here (the JWT is checked first).
        raise BadRequest("the request body could not be read: malformed chunked transfer encoding") from None
    except ClientDisconnected:
        # Werkzeug's name for the body's end of stream (gunicorn's NoMoreData) inside a chunked body:
        # the client may still read the answer, so it says what was wrong, not Werkzeug's generic 400.
        raise BadRequest("the request body could not be read: the connection ended inside a chunk") from None
    if request.content_length is not None and len(data) < request.content_length:
        raise BadRequest(f"the request body ended after {len(data)} of the {request.content_length} bytes "
                         "its Content-Length announced")
    request.environ[_BODY_READ] = True
    body = read_json(request.content_type, data, cds.settings.max_json_depth, lazy=lazy)
    request.environ["cds.body"] = body
    return body


def _fhir_servers_for(cds: Runtime) -> tuple[str, ...]:
    """An issuer that lists its own FHIR servers is held to that list."""
    identity = request.environ.get("cds.identity")
    client = cds.clients.get(identity.iss) if identity is not None and cds.clients else None
    if client is not None and client.fhir_servers:
        return tuple(client.fhir_servers)
    return cds.settings.fhir_servers


@bp.get("/cds-services")
def discovery() -> ResponseReturnValue:
    cds = runtime()
    return jsonify(discovery_document(cds.kb.version, {k: s.url for k, s in cds.kb.sources.items()}))


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str) -> ResponseReturnValue:
    service = _service_or_404(service_id)
    hook_request = parse_hook_request(_body(lazy="prefetch"), service)
    cds = runtime()
    result = run_hook(
        hook_request, cds.kb, cds.fhir, cds.clock, allowed_servers=_fhir_servers_for(cds),
        allow_http=cds.settings.allow_http_fhir, fhir_deadline=cds.settings.fhir_deadline,
        max_depth=cds.settings.max_json_depth,
    )
    result, silent_cards = apply_silent_mode(result, cds.settings.silent_rules)  # CDS_SILENT_RULES
    request.environ["cds.result"] = result  # for the audit log
    response = jsonify({"cards": result.cards})
    # Cards-served log for the analytics: queued here, written in batches by a background thread.
    record_served(cds.analytics, now=cds.clock(), service_id=service.id, hook=hook_request.hook,
                  returned=result.cards, silent=silent_cards, identity=request.environ.get("cds.identity"))
    return response


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> ResponseReturnValue:
    service = _service_or_404(service_id)
    items = parse_feedback(_body())
    runtime().feedback.add(service.id, items, client_iss=request.environ.get("cds.client_iss"))
    return jsonify({"stored": len(items)})


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    """The OpenAPI 3.1 description of this service, built from the CDS Hooks schemas."""
    return jsonify(load_schema("openapi"))


@bp.get("/healthz")
def health() -> ResponseReturnValue:
    cds = runtime()
    return jsonify({"status": "ok", "knowledgeVersion": cds.kb.version})
