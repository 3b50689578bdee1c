"""Helpers the test modules import (conftest.py is for fixtures only)."""
from __future__ import annotations

import os
import random
import re
import socket
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


def loopback_port() -> int:
    """A free port on 127.0.0.1 for a test's own server: any free one, or on a shared machine one
    of ``TEST_PORT_RANGE`` ("first-last", e.g. 18700-18799) so runs keep to the ports they were given."""
    span = os.environ.get("TEST_PORT_RANGE", "").strip()
    if not span:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])
    first, last = (int(part) for part in span.split("-"))
    for port in random.sample(range(first, last + 1), last - first + 1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in TEST_PORT_RANGE={span}")
