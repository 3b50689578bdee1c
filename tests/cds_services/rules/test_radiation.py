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
