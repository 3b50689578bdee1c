"""CORS for browser-based CDS clients such as the CDS Hooks sandbox.

Spec 2.0 §cross-origin-resource-sharing. Preflight requests carry no
Authorization header, so they are answered here, before any authentication,
and every response (errors included) carries the CORS headers for an allowed
origin. Credentials are allowed only for listed origins, never with "*".
"""
from __future__ import annotations

from flask import Flask, Response, request

from .errors import error_response

ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type"
PREFLIGHT_MAX_AGE = "600"


def _allowed_origin(origin: str, origins: tuple[str, ...]) -> str | None:
    """The value for Access-Control-Allow-Origin, or None when the origin is not allowed."""
    if origin.rstrip("/") in origins:
        return origin
    if "*" in origins:
        return "*"
    return None


def install_cors(app: Flask, origins: tuple[str, ...], allow_credentials: bool) -> None:
    def _headers(response: Response, allowed: str) -> None:
        response.headers["Access-Control-Allow-Origin"] = allowed
        if allowed != "*":
            response.vary.add("Origin")
            if allow_credentials:
                response.headers["Access-Control-Allow-Credentials"] = "true"

    @app.before_request
    def _preflight() -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        origin = request.headers.get("Origin", "")
        allowed = _allowed_origin(origin, origins)
        if allowed is None:
            return error_response(403, f"origin {origin or 'none'!r} is not allowed", "forbidden")
        response = app.response_class(status=204)
        _headers(response, allowed)
        response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        return response

    @app.after_request
    def _cors_headers(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin and "Access-Control-Allow-Origin" not in response.headers:
            allowed = _allowed_origin(origin, origins)
            if allowed is not None:
                _headers(response, allowed)
        return response
