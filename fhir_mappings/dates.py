"""FHIR date and dateTime values as timezone-aware UTC datetimes.

fhir.resources hands back ``datetime``/``date`` objects for full values but
plain strings for partial ones ("2026", "2026-11"); every comparison in the
mappings needs one kind of value, in UTC.
"""
from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any


def to_utc(value: Any) -> datetime | None:
    """A datetime in UTC; a date or partial date is taken as its first moment (UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        return parse_fhir_datetime(value)
    return None


@lru_cache(maxsize=8192)  # the same timestamps recur (one lab panel, many results; one record, many calls)
def parse_fhir_datetime(text: str) -> datetime | None:
    """A FHIR date/dateTime/instant string in UTC, or None when it is not one."""
    text = text.strip()
    try:
        if len(text) == len("YYYY") and text.isdigit():
            return datetime(int(text), 1, 1, tzinfo=UTC)
        if len(text) == len("YYYY-MM") and text[4] == "-":
            return datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=UTC)
        if len(text) == len("YYYY-MM-DD"):
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        parsed = datetime.fromisoformat(text)  # Python 3.11 reads a "Z" offset
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def period_time(period: Any) -> datetime | None:
    """A Period's end, else its start."""
    if period is None:
        return None
    return to_utc(period.end) or to_utc(period.start)
