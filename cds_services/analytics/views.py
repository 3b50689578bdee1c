"""``GET /analytics`` (HTML) and ``GET /analytics.json``, for the CDS committee.

Registered only when ``CDS_ANALYTICS_TOKEN`` is set (otherwise both paths are
the ordinary 404). Every request must then carry that token: as
``Authorization: Bearer <token>`` (scripts, ``curl``), or as the password of
HTTP Basic authentication (any user name), so that a pharmacist can open the
page in a browser, which asks for it. The token is compared in constant time
and never logged.
"""
from __future__ import annotations

import base64
import binascii
import hmac
from http import HTTPStatus
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from ..errors import BadRequest, Unauthorized
from ..runtime import runtime
from . import DEFAULT_SINCE_DAYS, load_report
from .page import render_page

bp = Blueprint("analytics", __name__)

REALM = 'realm="cds-analytics"'
# No script, no remote resource, no framing: the page is inline SVG and CSS only.
PAGE_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
               "form-action 'none'; frame-ancestors 'none'")


def _presented_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


@bp.before_request
def _require_token() -> None:
    expected = runtime().settings.analytics_token
    presented = _presented_token(request.headers.get("Authorization"))
    if expected is None or presented is None or not hmac.compare_digest(
        presented.encode("utf-8"), expected.encode("utf-8")
    ):
        raise Unauthorized("the analytics need the token set in CDS_ANALYTICS_TOKEN")


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    if response.status_code == HTTPStatus.UNAUTHORIZED:
        # Basic too, so that a browser asks for the token instead of showing the error. One challenge per
        # header: Chromium reads a header as one challenge, so "Bearer ..., Basic ..." in one line was a
        # Bearer challenge to it, and it showed the JSON error instead of asking.
        response.headers["WWW-Authenticate"] = f"Bearer {REALM}"
        response.headers.add("WWW-Authenticate", f'Basic {REALM}, charset="UTF-8"')
    return response


def _since_days(retention_days: int) -> int:
    raw = request.args.get("since")
    if raw is None:
        return min(DEFAULT_SINCE_DAYS, retention_days)
    # More digits than the retention has is out of range; int() would refuse past 4,300 digits (a 500).
    digits = raw.lstrip("0")
    if (not (raw.isascii() and raw.isdigit()) or len(digits) > len(str(retention_days))
            or not 1 <= int(raw) <= retention_days):
        raise BadRequest(
            f"since must be a whole number of days from 1 to {retention_days} (CDS_ANALYTICS_RETENTION_DAYS); "
            f"got {raw[:20]!r}",
            expression=["since"],
        )
    return int(raw)


def _report() -> dict[str, Any]:
    cds = runtime()
    since = _since_days(cds.settings.analytics_retention_days)
    cds.analytics.flush()  # this process's latest cards, not a second old
    return load_report(
        cds.feedback.engine, cds.kb, now=cds.clock(), since_days=since, silent_rules=cds.settings.silent_rules
    )


@bp.get("/analytics.json")
def analytics_json() -> ResponseReturnValue:
    return jsonify(_report())


@bp.get("/analytics")
def analytics_page() -> ResponseReturnValue:
    response = Response(render_page(_report()), mimetype="text/html")
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
