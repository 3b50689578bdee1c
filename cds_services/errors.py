"""One exception root, and one place that turns every error into JSON.

Each :class:`CdsError` subclass carries its HTTP status; the handlers in
:func:`register_error_handlers` answer every error, Werkzeug's own (404, 405,
413...) and unexpected exceptions included, with a FHIR OperationOutcome, so a
caller never sees HTML or a stack trace.
"""
from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException, MethodNotAllowed

log = logging.getLogger(__name__)


class CdsError(Exception):
    """Base of the errors the service answers with an OperationOutcome."""

    status = 500
    code = "exception"  # FHIR issue-type code

    def __init__(self, message: str, *, expression: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expression = expression


class BadRequest(CdsError):
    status = 400
    code = "invalid"


class Unauthorized(CdsError):
    status = 401
    code = "login"


class NotFound(CdsError):
    status = 404
    code = "not-found"


class UnsupportedMediaType(CdsError):
    status = 415
    code = "not-supported"


class PreconditionFailed(CdsError):
    """The checks need data that was neither prefetched nor fetchable (spec: 412)."""

    status = 412
    code = "incomplete"


def operation_outcome(
    message: str, code: str = "processing", severity: str = "error",
    expression: list[str] | None = None,
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": message}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def error_response(status: int, message: str, code: str, expression: list[str] | None = None) -> Response:
    response = jsonify(operation_outcome(message, code=code, expression=expression))
    response.status_code = status
    return response


# Werkzeug status -> FHIR issue-type code, for errors raised by Flask itself.
_HTTP_CODES = {400: "invalid", 404: "not-found", 405: "not-supported", 413: "too-costly", 415: "not-supported"}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CdsError)
    def _cds_error(error: CdsError) -> Response:
        if error.status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            log.error("server error: %s", error.message)
        response = error_response(error.status, error.message, error.code, error.expression)
        if error.status == HTTPStatus.UNAUTHORIZED:
            # RFC 6750 §3: a 401 names the scheme; no error attribute, the reason stays in our log.
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        message = error.description or error.name
        allowed = sorted(error.valid_methods or []) if isinstance(error, MethodNotAllowed) else []
        if status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"request body is larger than the limit of {limit} bytes"
        elif status == HTTPStatus.METHOD_NOT_ALLOWED:
            message = f"method not allowed here; allowed: {', '.join(allowed)}"
        elif status == HTTPStatus.NOT_FOUND:
            message = "no such endpoint; the service list is at GET /cds-services"
        response = error_response(status, message, _HTTP_CODES.get(status, "processing"))
        if status == HTTPStatus.METHOD_NOT_ALLOWED and allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        # Logged with its traceback for us; the caller gets a plain sentence.
        log.error("unhandled error", exc_info=error)
        return error_response(500, "internal error; the event was logged", "exception")
