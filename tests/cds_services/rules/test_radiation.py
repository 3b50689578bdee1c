from __future__ import annotations

import pytest

from cds_services.rules.radiation import radiation_recall
from tests.cds_services.rules.conftest import evidence, make_facts, only


@pytest.mark.parametrize("days, fires", [(89, True), (90, True), (91, False)])
def test_radiotherapy_window(kb, days, fires):
    facts = make_facts(radiotherapy=(evidence("Radiotherapy (SNOMED 1287742003)", days=days),))
    findings = list(radiation_recall(facts, kb))
    assert bool(findings) is fires
    if fires:
        assert findings[0].indicator == "info"
        assert "project setting" in findings[0].detail


def test_undated_radiotherapy_is_reported(kb):
    facts = make_facts(radiotherapy=(evidence("Radiotherapy", days=None),))
    assert "date unknown" in only(list(radiation_recall(facts, kb)), "radiation-recall").summary


def test_the_card_names_the_latest_course_and_what_radiation_recall_is(kb):
    """ixabepilone.md: inflammation in a previously irradiated field after radiotherapy [S; label postmarketing];
    the 90-day window is this project's judgment and the card says so."""
    facts = make_facts(radiotherapy=(evidence("Radiotherapy of breast", days=60, code="1287742003"),
                                     evidence("Radiotherapy of axilla", days=20)))
    finding = only(list(radiation_recall(facts, kb)), "radiation-recall")
    assert finding.summary == "Radiotherapy 2026-11-05, within 90 days: watch for radiation recall"
    assert finding.detail.splitlines() == [
        "- **Radiotherapy of breast**, 2026-09-26 (60 d ago), code 1287742003, Condition/c-1",
        "- **Radiotherapy of axilla**, 2026-11-05 (20 d ago), Condition/c-1",
        "",
        "Radiation recall (inflammation of a previously irradiated field) has been reported when ixabepilone "
        "is given after radiotherapy [S; L postmarketing experience].",
        "The 90-day window is a project setting.",
        "",
        "**What to do:** examine the irradiated field before and during treatment.",
    ]
