"""Higher risk of severe peripheral neuropathy [L §5.1]: diabetes or existing neuropathy on record."""
from __future__ import annotations

from collections.abc import Iterator

from cds_services.findings import Finding
from cds_services.knowledge import Knowledge
from fhir_mappings.facts import PatientFacts

from .common import Draft, evidence_line, rule


@rule("neuropathy-risk")
def neuropathy_risk(facts: PatientFacts, _kb: Knowledge) -> Iterator[Draft | Finding]:
    items = [*facts.neuropathy, *facts.diabetes]
    if not items:
        return
    what = []
    if facts.neuropathy:
        what.append("peripheral neuropathy")
    if facts.diabetes:
        what.append("diabetes")
    summary = f"{' and '.join(what).capitalize()} on record: higher risk of severe ixabepilone neuropathy"
    lines = [evidence_line(facts, e) for e in items] + [
        "",
        "**Label:** patients with diabetes mellitus or existing peripheral neuropathy may be at higher risk of "
        "severe neuropathy [L §5.1]. Grade 2 neuropathy for ≥ 7 days or grade 3 for < 7 days: reduce the dose "
        "by 20%; grade 3 for ≥ 7 days or disabling: discontinue [L §2.2].",
        "",
        "**What to do:** grade neuropathy at each visit.",
    ]
    yield Draft("info", summary, "\n".join(lines))
