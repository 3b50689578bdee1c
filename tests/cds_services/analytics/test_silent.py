"""Silent mode's split of the computed cards (the HTTP tests cover the response and the log)."""
from __future__ import annotations

import pytest

from cds_services.analytics.silent import check_silent_rules, split_silent
from cds_services.config import ConfigError


def card(code):
    return {"uuid": code, "source": {"topic": {"system": "urn:ixabepilone-cds:rules", "code": code}}}


CARDS = [card("platelets-low"), card("dose-check"), card("premedication-missing"), {"uuid": "no-topic"}]


def test_split_keeps_the_order_of_each_part():
    returned, silent = split_silent(CARDS, ("premedication-missing", "platelets-low"))
    assert [c["uuid"] for c in returned] == ["dose-check", "no-topic"]
    assert [c["uuid"] for c in silent] == ["platelets-low", "premedication-missing"]


def test_star_holds_back_every_card_and_nothing_holds_back_none():
    assert split_silent(CARDS, ("*",)) == ([], CARDS)
    assert split_silent(CARDS, ()) == (CARDS, [])


def test_check_names_the_unknown_codes():
    check_silent_rules(("*",), ["platelets-low"])
    check_silent_rules(("platelets-low",), ["platelets-low", "dose-check"])
    with pytest.raises(ConfigError, match="unknown rule code\\(s\\) dose-chek; known: dose-check, platelets-low"):
        check_silent_rules(("platelets-low", "dose-chek"), ["platelets-low", "dose-check"])
