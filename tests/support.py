"""Helpers the test modules import (conftest.py is for fixtures only)."""
from __future__ import annotations

import re
from typing import Any


def rule_codes(response_json: dict[str, Any]) -> list[str]:
    """The rule code of each card, in order."""
    return [card["source"]["topic"]["code"] for card in response_json["cards"]]


_MD_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def markdown_text(markdown: str) -> str:
    """Card Markdown with the backslash escapes resolved (CommonMark §2.4: a backslash
    before ASCII punctuation shows the punctuation) and the zero-width spaces that
    break e-mail autolinks removed: the characters a clinician reads. Request text
    is escaped in cards (rules.common.escape_md); tests compare what is shown."""
    return _MD_ESCAPE.sub(r"\1", markdown).replace("\u200b", "")
