from __future__ import annotations

import pytest

from cds_services.rules.vaccines import live_vaccine
from tests.cds_services.rules.conftest import evidence, make_facts, only


@pytest.mark.parametrize("days, fires", [(29, True), (30, True), (31, False)])
def test_live_vaccine_window(kb, days, fires):
    facts = make_facts(live_vaccines=(evidence("Zoster live vaccine (CVX 121)", days=days, code="121"),))
    findings = list(live_vaccine(facts, kb))
    assert bool(findings) is fires
    if fires:
        assert findings[0].indicator == "warning"


def test_ordered_live_vaccine_fires(kb):
    facts = make_facts(live_vaccines=(evidence("MMR vaccine order (CVX 03)", days=0, code="03"),))
    finding = only(list(live_vaccine(facts, kb)), "live-vaccine")
    assert "MMR" in finding.summary and "code 03" in finding.detail
