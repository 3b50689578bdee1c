"""Helpers for the analytics tests: hook calls and feedback as an EHR sends them, and a few weeks of history.

Everything goes through the HTTP API (the Flask test client or a real
server), as the committee's numbers will in production: hook calls from the
request files in ``tests/fixtures/http/``, feedback items shaped as the CDS
Hooks 2.0 feedback endpoint receives them (§Feedback: ``card``, ``outcome``,
``outcomeTimestamp``, ``acceptedSuggestions`` or ``overrideReason``).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = ROOT / "tests" / "fixtures" / "http"
SIGN = "/cds-services/ixabepilone-order-sign"
SELECT = "/cds-services/ixabepilone-order-select"
TOKEN = "committee-7Qd2xV9pLr4sT8wZ"  # a test value for CDS_ANALYTICS_TOKEN
REASON_SYSTEM = "urn:ixabepilone-cds:override-reason"  # README, Rule codes
REASON_DISPLAY = {
    "benefit-outweighs-risk": "Benefit outweighs risk",
    "patient-monitored": "Will monitor closely",
    "data-outdated": "Data shown is outdated or wrong",
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$")


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def request_body(name: str, ago: timedelta = timedelta(0)) -> dict[str, Any]:
    """A request file (dated for 2026-11-25), every date in it moved ``ago`` back: the patient as seen then."""
    body = json.loads((REQUESTS / f"{name}.json").read_text(encoding="utf-8"))
    return _shift(body, ago) if ago else body


def _shift(value: Any, delta: timedelta) -> Any:
    if isinstance(value, dict):
        return {k: _shift(v, delta) for k, v in value.items()}
    if isinstance(value, list):
        return [_shift(v, delta) for v in value]
    if isinstance(value, str) and _DATE.match(value):
        if "T" not in value:
            return (datetime.fromisoformat(value) - delta).date().isoformat()
        moment = datetime.fromisoformat(value) - delta
        return moment.isoformat().replace("+00:00", "Z") if value.endswith("Z") else moment.isoformat()
    return value


def call(client: Any, name: str, *, ago: timedelta = timedelta(0), path: str = SIGN,
         headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """POST one hook request, dated ``ago`` before 2026-11-25; the cards returned."""
    response = client.post(path, data=json.dumps(request_body(name, ago)), content_type="application/json",
                           headers=headers or {})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_json()["cards"]


def card_of(cards: list[dict[str, Any]], code: str) -> dict[str, Any]:
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == code]
    return card


def overridden(card: dict[str, Any], reason: str | None = "benefit-outweighs-risk", comment: str | None = None,
               at: str = "2026-11-25T10:02:40-05:00") -> dict[str, Any]:
    item: dict[str, Any] = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": at}
    override: dict[str, Any] = {}
    if reason is not None:
        override["reason"] = {"system": REASON_SYSTEM, "code": reason, "display": REASON_DISPLAY[reason]}
    if comment is not None:
        override["userComment"] = comment
    if override:
        item["overrideReason"] = override
    return item


def accepted(card: dict[str, Any], at: str = "2026-11-25T10:02:40-05:00") -> dict[str, Any]:
    return {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": at,
            "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}


def send_feedback(client: Any, items: list[dict[str, Any]], path: str = SIGN, headers: dict[str, str] | None = None
                  ) -> None:
    if not items:
        return
    response = client.post(path + "/feedback", data=json.dumps({"feedback": items}), content_type="application/json",
                           headers=headers or {})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]


def six_weeks(client_at: Callable[[datetime], Any], now: datetime) -> None:
    """Six weeks of a ward's ixabepilone orders and what clinicians did with the cards.

    ``client_at(moment)`` gives a test client whose clock reads ``moment``. The
    story: platelets-low is mostly heeded; premedication-missing is overridden
    nearly every time (36 answered, 35 overridden: an alert-fatigue
    candidate); the interaction cards are mixed; neuropathy-risk is in silent
    mode when the app says so. Expected numbers: the tests that use it.
    """
    for weeks_ago in range(5, -1, -1):
        ago = timedelta(weeks=weeks_ago)
        client = client_at(now - ago)
        items: list[dict[str, Any]] = []
        for i in range(3):
            card = card_of(call(client, "platelets-low", ago=ago), "platelets-low")
            items.append(accepted(card) if i < 2 else overridden(card, "data-outdated", "Platelets rechecked today"))
        for i in range(6):
            card = card_of(call(client, "premedication-missing", ago=ago), "premedication-missing")
            if weeks_ago == 0 and i == 0:
                items.append(accepted(card))
            else:
                items.append(overridden(card, "patient-monitored" if i % 3 else None,
                                        "Premedication given on the ward" if i == 1 else None))
        cards = call(client, "cyp3a4-strong-inhibitor", ago=ago)
        items.append(accepted(card_of(cards, "cyp3a4-strong-inhibitor")) if weeks_ago % 2 else
                     overridden(card_of(cards, "cyp3a4-strong-inhibitor"), "benefit-outweighs-risk"))
        items.append(overridden(card_of(cards, "dose-check"), "benefit-outweighs-risk"))
        call(client, "neuropathy-risk", ago=ago)
        call(client, "hepatic-monotherapy", ago=ago)  # no feedback: ignored
        send_feedback(client, items)


def as_utc_day(moment: datetime) -> str:
    return moment.astimezone(UTC).date().isoformat()
