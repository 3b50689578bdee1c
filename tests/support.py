"""Helpers the test modules import (conftest.py is for fixtures only)."""
from __future__ import annotations

from typing import Any


def rule_codes(response_json: dict[str, Any]) -> list[str]:
    """The rule code of each card, in order."""
    return [card["source"]["topic"]["code"] for card in response_json["cards"]]
