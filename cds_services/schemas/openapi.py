"""Build ``openapi.json`` (OpenAPI 3.1) from the message schemas beside it.

One source of truth: each message schema's ``$defs`` become components named
``<Message>.<def>`` and its ``#/$defs/...`` references are rewritten to
point there, so the document stands alone (schemathesis and validators need
no other file) yet cannot drift from the schema files; a test compares the
committed file with :func:`build_openapi`. Regenerate after editing a schema:
``python -m cds_services.schemas.openapi``.

Each of our two services gets its own concrete path, because OpenAPI cannot
tie a request body to the value of a path parameter: with concrete paths a
fuzzer sends an order-select body to the order-select service only, and any
other id is documented as a 404 on the templated path.
"""
from __future__ import annotations

import json
from typing import Any

from . import OPENAPI_FILE, SCHEMA_DIR, SCHEMA_FILES, load_schema

VERSION = "0.1.0"  # pyproject.toml [project].version
SERVICES = {"ixabepilone-order-select": "order-select", "ixabepilone-order-sign": "order-sign"}
COMPONENT_NAMES = {
    "discovery_response": "DiscoveryResponse",
    "service_response": "ServiceResponse",
    "feedback_request": "FeedbackRequest",
    "service_request": "ServiceRequest",
}
_REQUEST_DEF = {"order-select": "orderSelectRequest", "order-sign": "orderSignRequest"}


def _rewrite_refs(node: Any, prefix: str) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                out[key] = f"#/components/schemas/{prefix}.{value.removeprefix('#/$defs/')}"
            else:
                out[key] = _rewrite_refs(value, prefix)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, prefix) for item in node]
    return node


def component_schemas() -> dict[str, Any]:
    """The message schemas as OpenAPI components (root and each $def)."""
    components: dict[str, Any] = {}
    for name in SCHEMA_FILES:
        prefix = COMPONENT_NAMES[name]
        schema = load_schema(name)
        defs = schema.pop("$defs", {})
        schema.pop("$schema", None)
        schema.pop("$id", None)
        components[prefix] = _rewrite_refs(schema, prefix)
        for def_name, definition in defs.items():
            components[f"{prefix}.{def_name}"] = _rewrite_refs(definition, prefix)
    return components


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    names = {
        400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed",
        412: "PreconditionFailed", 413: "PayloadTooLarge", 415: "UnsupportedMediaType",
        422: "UnprocessableContent", 500: "ServerError",
    }
    return {str(code): {"$ref": f"#/components/responses/{names[code]}"} for code in codes}


_OUTCOME = {
    "description": "A FHIR OperationOutcome: every error answer, so a caller never parses HTML or a stack trace.",
    "type": "object",
    "required": ["resourceType", "issue"],
    "additionalProperties": False,
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["severity", "code", "diagnostics"],
                "additionalProperties": False,
                "properties": {
                    "severity": {"enum": ["fatal", "error", "warning", "information"]},
                    "code": {
                        "description": "A FHIR issue-type code (http://hl7.org/fhir/issue-type), "
                        "e.g. invalid, login, not-found.",
                        "type": "string",
                        "pattern": "^[a-z]+(-[a-z]+)*$",
                    },
                    "diagnostics": {"type": "string", "minLength": 1, "pattern": "\\S"},
                    "expression": {
                        "description": "The request fields at fault, e.g. context.patientId.",
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "minLength": 1},
                    },
                },
            },
        },
    },
}


def _error_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response = _json(_ref("OperationOutcome"), description)
    if headers:
        response["headers"] = headers
    return response


def _service_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    security: list[dict[str, list[str]]] = [{"cdsHooksJwt": []}]
    for service_id, hook in SERVICES.items():
        paths[f"/cds-services/{service_id}"] = {
            "post": {
                "operationId": f"call_{service_id.replace('-', '_')}",
                "summary": f"Call the {hook} service",
                "description": f"CDS Hooks 2.0 §Calling a CDS Service, hook {hook}. "
                "Cards, or an empty cards array for no guidance.",
                "tags": ["CDS Services"],
                "security": security,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(f"ServiceRequest.{_REQUEST_DEF[hook]}")}},
                },
                "responses": {
                    "200": _json(_ref("ServiceResponse"), "Cards (possibly none) and optional systemActions."),
                    **_errors(400, 401, 412, 413, 415, 422, 500),
                },
            }
        }
        paths[f"/cds-services/{service_id}/feedback"] = {
            "post": {
                "operationId": f"feedback_{service_id.replace('-', '_')}",
                "summary": f"Feedback on the cards of the {hook} service",
                "description": "CDS Hooks 2.0 §Feedback. Stored before the 200 is sent.",
                "tags": ["Feedback"],
                "security": security,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("FeedbackRequest")}},
                },
                "responses": {
                    "200": _json(_ref("FeedbackReceipt"), "The feedback items were stored."),
                    **_errors(400, 401, 413, 415, 422, 500),
                },
            }
        }
    unknown_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "Any id that is not one of our services (those have their own paths above).",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "not": {"enum": list(SERVICES)}},
    }
    for suffix, what in (("", "service call"), ("/feedback", "feedback")):
        paths[f"/cds-services/{{id}}{suffix}"] = {
            "post": {
                "operationId": f"unknown_service{suffix.replace('/', '_')}",
                "summary": f"A {what} for an id we do not serve",
                "tags": ["CDS Services"],
                "security": security,
                "parameters": [unknown_id],
                "requestBody": {"required": False, "content": {"application/json": {"schema": {}}}},
                # 404 is the answer for the ids this operation is for; a fuzzer that
                # sends one of our own ids here on purpose gets that service's errors.
                "responses": _errors(400, 401, 404, 412, 413, 415, 422, 500),
            }
        }
    return paths


def build_openapi() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document of the service."""
    open_access: list[dict[str, list[str]]] = []
    paths: dict[str, Any] = {
        "/cds-services": {
            "get": {
                "operationId": "discovery",
                "summary": "Discovery: the services offered, their hooks and prefetch templates",
                "description": "CDS Hooks 2.0 §Discovery. Open: it holds no patient data.",
                "tags": ["Discovery"],
                "security": open_access,
                "responses": {
                    "200": _json(_ref("DiscoveryResponse"), "The services."),
                    **_errors(500),
                },
            }
        },
        **_service_paths(),
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Liveness, and the version of the knowledge base in use",
                "tags": ["Operations"],
                "security": open_access,
                "responses": {"200": _json(_ref("Health"), "The service is up."), **_errors(500)},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["Operations"],
                "security": open_access,
                "responses": {"200": _json(_ref("OpenApiDocument"), "The OpenAPI 3.1 document."), **_errors(500)},
            }
        },
    }
    schemas = {
        **component_schemas(),
        "OperationOutcome": _OUTCOME,
        "FeedbackReceipt": {
            "description": "Our answer to feedback (the spec defines none): how many items were stored.",
            "type": "object",
            "required": ["stored"],
            "additionalProperties": False,
            "properties": {"stored": {"type": "integer", "minimum": 1}},
        },
        "Health": {
            "type": "object",
            "required": ["status", "knowledgeVersion"],
            "additionalProperties": False,
            "properties": {
                "status": {"const": "ok"},
                "knowledgeVersion": {"type": "string", "minLength": 1},
            },
        },
        "OpenApiDocument": {
            "type": "object",
            "required": ["openapi", "info", "paths"],
            "properties": {"openapi": {"type": "string", "pattern": "^3\\.1\\.[0-9]+$"}},
        },
    }
    responses = {
        "BadRequest": _error_response(
            "Malformed JSON, or a request the spec does not allow; diagnostics name the field."),
        "Unauthorized": _error_response(
            "No valid CDS Hooks JWT (spec 2.0 §Trusting CDS Clients); the reason is logged, not sent."),
        "NotFound": _error_response("No CDS service with that id; the list is at GET /cds-services."),
        "MethodNotAllowed": _error_response(
            "The path exists but not for this method.",
            headers={"Allow": {"description": "The methods the path accepts.", "schema": {"type": "string"}}},
        ),
        "PreconditionFailed": _error_response(
            "The data the checks need was neither prefetched nor fetchable from the FHIR server "
            "(spec 2.0 §CDS Service Response: 412)."
        ),
        "PayloadTooLarge": _error_response("The request body is over the configured limit."),
        "UnsupportedMediaType": _error_response("The request body is not application/json."),
        "UnprocessableContent": _error_response("Well-formed JSON whose content cannot be processed."),
        "ServerError": _error_response("An unexpected error; it was logged."),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Ixabepilone (Ixempra) order safety: CDS Hooks 2.0 service",
            "version": VERSION,
            "summary": "CDS Hooks 2.0 discovery, service and feedback endpoints for ixabepilone orders.",
            "description": (
                "Written from the CDS Hooks 2.0 specification (cds-hooks.hl7.org/2.0) and the order-select "
                "and order-sign hooks (hookVersion 1.0). Message schemas are JSON Schema 2020-12, the same "
                "as cds_services/schemas/*.schema.json. Every error is a FHIR OperationOutcome; a path "
                "that exists answers other methods with 405 and an Allow header (components.responses."
                "MethodNotAllowed). Service and feedback calls need the client's signed JWT; discovery, "
                "health and this document are open."
            ),
        },
        "tags": [
            {"name": "Discovery"}, {"name": "CDS Services"}, {"name": "Feedback"}, {"name": "Operations"},
        ],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": {
                "cdsHooksJwt": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": (
                        "CDS Hooks 2.0 §Trusting CDS Clients: a JWT signed by the client with an asymmetric "
                        "key (ES384 or RS384 recommended; none and HMAC refused), header kid and typ JWT, "
                        "claims iss, aud (this endpoint's URL), exp, iat, jti (single use)."
                    ),
                }
            },
        },
    }


def render() -> str:
    return json.dumps(build_openapi(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    (SCHEMA_DIR / OPENAPI_FILE).write_text(render(), encoding="utf-8")
    print(f"wrote {SCHEMA_DIR / OPENAPI_FILE}")
