"""H1 and H2 antagonist premedication about 1 hour before each infusion [L §2.3].

Suggests diphenhydramine 50 mg PO and famotidine 20 mg PO (ranitidine, named
by the label, left the US market in 2020). Never cimetidine: it inhibits
CYP3A4. The create suggestions are independent (selection "any").
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cds_services.findings import Action, Finding, Suggestion
from cds_services.knowledge import Knowledge, PremedDrug
from fhir_mappings.codes import RXNORM, SNOMED, UCUM
from fhir_mappings.facts import PatientFacts

from .common import INTRAVENOUS_ROUTE, Draft, escape_md, num, rule
from .interactions import GRAPEFRUIT, ST_JOHNS_WORT

# SNOMED CT route codes (FHIR R4 route-codes value set; fhir_mappings/data/codes.json "exposure") for the
# knowledge file's route abbreviations.
ROUTES = {
    "PO": ({"system": SNOMED, "code": "26643006", "display": "Oral route"}, "oral"),
    "IV": (INTRAVENOUS_ROUTE, "intravenous"),
}


def premed_request(facts: PatientFacts, drug: PremedDrug) -> dict[str, Any]:
    """A draft MedicationRequest for one premedication (R4): drug, dose, route and timing from the knowledge file."""
    route, route_text = ROUTES[drug.route]
    return {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": drug.rxnorm, "display": drug.display}],
            "text": drug.display,
        },
        "subject": {"reference": f"Patient/{facts.patient_id}"},
        "authoredOn": facts.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dosageInstruction": [
            {
                "text": f"{num(drug.dose_mg)} mg {drug.route} once, "
                        f"{drug.timing or 'before the infusion'} of ixabepilone",
                "route": {"coding": [route], "text": route_text},
                "doseAndRate": [
                    {"doseQuantity": {"value": drug.dose_mg, "unit": "mg", "system": UCUM, "code": "mg"}}
                ],
            }
        ],
    }


def dose_route(drug: PremedDrug) -> str:
    """"20 mg IV"."""
    return f"{num(drug.dose_mg)} mg {drug.route}"


def steroid_text(drug: PremedDrug) -> str:
    """"dexamethasone 20 mg IV, 30 minutes before the infusion, or orally 60 minutes before" [L §2.3]."""
    return f"{drug.drug} {dose_route(drug)}, {drug.timing or 'before the infusion'}, or orally 60 minutes before"


@rule("premedication-missing")
def premedication_missing(facts: PatientFacts, kb: Knowledge) -> Iterator[Draft | Finding]:
    premed = kb.premedication
    if not (facts.known("medicationRequests") and facts.known("medicationStatements")):
        return  # the medication list could not be read: a premedication may be on it (check-unavailable says so)
    # A cream or eye drop of an antihistamine is not premedication (issue 12 item 3: local forms).
    uses = [u for u in (*facts.draft_orders, *facts.medications) if u.exposure != "local"]
    have_h1 = [u for u in uses if u.drugs & premed.h1]
    have_h2 = [u for u in uses if u.drugs & premed.h2]
    missing = []
    if not have_h1:
        missing.append(("H1", premed.suggest_h1))
    if not have_h2:
        missing.append(("H2", premed.suggest_h2))
    if not missing:
        return
    which = " and ".join(kind for kind, _ in missing)
    summary = f"No {which} antagonist premedication ordered: give 1 hour before ixabepilone"
    suggestions = tuple(
        Suggestion(
            label=f"Order {drug.display.split(' ')[0]} {num(drug.dose_mg)} mg {drug.route} ({kind} antagonist)",
            actions=(
                Action(
                    type="create",
                    description=f"{kind} antagonist premedication: {drug.display}, "
                                f"{num(drug.dose_mg)} mg {drug.route}",
                    resource=premed_request(facts, drug),
                ),
            ),
            is_recommended=True,
        )
        for kind, drug in missing
    )
    present = [f"{kind}: {escape_md(u.display)}" for kind, group in (("H1", have_h1), ("H2", have_h2)) for u in group]
    lines = [f"- Missing: {which} antagonist."]
    if present:
        lines.append(f"- Present: {'; '.join(present)}.")
    h2 = premed.suggest_h2  # famotidine: [project setting] for the label's ranitidine
    lines += [
        "",
        "**Label:** about 1 hour before each infusion give an H1 antagonist (e.g. diphenhydramine 50 mg orally) and "
        "an H2 antagonist (e.g. ranitidine 150-300 mg orally) [L §2.3].",
        f"- H2 suggestion {h2.display} (a project setting): ranitidine left the US market in 2020 and famotidine "
        "is today's usual equivalent.",
        "- Cimetidine is not suggested: it inhibits CYP3A4 and may raise ixabepilone levels [F].",
        "- After a prior hypersensitivity reaction also give a corticosteroid "
        f"({steroid_text(premed.corticosteroid)}) [L §2.3].",
        "",
        f"- {GRAPEFRUIT}",
        f"- {ST_JOHNS_WORT}",
    ]
    yield Draft("info",
        summary,
        "\n".join(lines),
        suggestions=suggestions,
        selection_behavior="any",
    )
