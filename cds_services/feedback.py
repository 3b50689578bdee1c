"""Feedback on our cards: validated, then stored durably.

Feedback is how we learn which cards clinicians override, so nothing
accepted may be lost: a batch is written in one transaction and the 200 is
sent only after the commit. The store is SQLAlchemy Core, so the default
SQLite file and a production PostgreSQL URL run the same code.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    insert,
    inspect,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from .errors import BadRequest

OUTCOMES = ("accepted", "overridden")
CARD_UUID_MAX = 200  # the card_uuid column's width

metadata = MetaData()

feedback_table = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", String(200), nullable=False),
    Column("card_uuid", String(CARD_UUID_MAX), nullable=False, index=True),
    Column("outcome", String(20), nullable=False),
    Column("accepted_suggestions", JSON, nullable=True),
    Column("override_reason", JSON, nullable=True),
    Column("outcome_timestamp", String(64), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("client_iss", String(500), nullable=True),
    Column("raw", Text, nullable=False),  # the item exactly as received
)


@dataclass(frozen=True)
class FeedbackItem:
    card: str
    outcome: str
    outcome_timestamp: str
    accepted_suggestions: list[dict[str, Any]] | None
    override_reason: dict[str, Any] | None
    raw: dict[str, Any]


def _parse_timestamp(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{where}.outcomeTimestamp is required (an ISO 8601 date-time)",
                         expression=[f"{where}.outcomeTimestamp"])
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{where}.outcomeTimestamp {value!r} is not an ISO 8601 date-time",
                         expression=[f"{where}.outcomeTimestamp"]) from None
    if parsed.tzinfo is None:
        raise BadRequest(f"{where}.outcomeTimestamp must carry a time zone", expression=[f"{where}.outcomeTimestamp"])
    return value


def parse_feedback(body: Any) -> list[FeedbackItem]:
    """Validate a feedback body (spec 2.0 §feedback); each error names its item."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object with a feedback array")
    items = body.get("feedback")
    if not isinstance(items, list) or not items:
        raise BadRequest("feedback must be a non-empty array", expression=["feedback"])
    parsed: list[FeedbackItem] = []
    for index, item in enumerate(items):
        where = f"feedback[{index}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object", expression=[where])
        card = item.get("card")
        if not isinstance(card, str) or not card.strip():
            raise BadRequest(f"{where}.card is required (the card's uuid)", expression=[f"{where}.card"])
        if len(card) > CARD_UUID_MAX or not card.isprintable():  # VARCHAR(200); no NUL
            raise BadRequest(
                f"{where}.card must be a card uuid (at most 200 printable characters)", expression=[f"{where}.card"]
            )
        outcome = item.get("outcome")
        if outcome not in OUTCOMES:
            raise BadRequest(f"{where}.outcome must be 'accepted' or 'overridden'", expression=[f"{where}.outcome"])
        accepted = item.get("acceptedSuggestions")
        if outcome == "accepted":
            if not isinstance(accepted, list) or not accepted or not all(
                isinstance(s, dict) and isinstance(s.get("id"), str) and s["id"] for s in accepted
            ):
                raise BadRequest(
                    f"{where}.acceptedSuggestions is required for an accepted outcome: "
                    "an array of objects with the suggestion's id",
                    expression=[f"{where}.acceptedSuggestions"],
                )
        elif accepted is not None and not isinstance(accepted, list):
            raise BadRequest(f"{where}.acceptedSuggestions must be an array",
                             expression=[f"{where}.acceptedSuggestions"])
        reason = item.get("overrideReason")
        if reason is not None:
            if not isinstance(reason, dict):
                raise BadRequest(f"{where}.overrideReason must be an object", expression=[f"{where}.overrideReason"])
            coding = reason.get("reason")
            if coding is not None and not (isinstance(coding, dict) and isinstance(coding.get("code"), str)):
                raise BadRequest(f"{where}.overrideReason.reason must be a Coding with a code",
                                 expression=[f"{where}.overrideReason.reason"])
            comment = reason.get("userComment")
            if comment is not None and not isinstance(comment, str):
                raise BadRequest(f"{where}.overrideReason.userComment must be a string",
                                 expression=[f"{where}.overrideReason.userComment"])
        timestamp = _parse_timestamp(item.get("outcomeTimestamp"), where)
        parsed.append(FeedbackItem(card, outcome, timestamp, accepted, reason, item))
    return parsed


def default_instance_path() -> str:
    """The folder of the default SQLite file: ``instance/`` beside ``app.py``.

    One place, so the service and ``python -m cds_services.analytics`` open the
    same file when ``CDS_DATABASE_URL`` is unset.
    """
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "instance")


def default_sqlite_url(instance_path: str) -> str:
    return f"sqlite:///{instance_path}/feedback.sqlite3"


def create_tables(engine: Engine, tables: Iterable[Table]) -> None:
    """CREATE TABLE for those of ``tables`` that are missing, tolerating the boot race.

    Several gunicorn workers (and replicas) start at once and race to create
    the tables; the loser's error is harmless once the table is there.
    """
    tables = list(tables)
    try:
        metadata.create_all(engine, tables=tables)
    except DBAPIError:
        found = inspect(engine)
        if not all(found.has_table(table.name) for table in tables):
            raise


class FeedbackStore:
    """Feedback items, durably. Its engine is the analytics' too (one database, one pool)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        create_tables(self.engine, [feedback_table])

    def add(self, service_id: str, items: Iterable[FeedbackItem], client_iss: str | None = None) -> int:
        now = datetime.now(UTC)
        rows = [
            {
                "service_id": service_id,
                "card_uuid": item.card,
                "outcome": item.outcome,
                "accepted_suggestions": item.accepted_suggestions,
                "override_reason": item.override_reason,
                "outcome_timestamp": item.outcome_timestamp,
                "received_at": now,
                "client_iss": client_iss,
                "raw": json.dumps(item.raw, separators=(",", ":"), ensure_ascii=False),
            }
            for item in items
        ]
        with self.engine.begin() as connection:
            connection.execute(insert(feedback_table), rows)
        return len(rows)

    def all(self, card_uuid: str | None = None) -> list[dict[str, Any]]:
        query = select(feedback_table).order_by(feedback_table.c.id)
        if card_uuid is not None:
            query = query.where(feedback_table.c.card_uuid == card_uuid)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def close(self) -> None:
        self.engine.dispose()
