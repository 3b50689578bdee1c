"""A dose-change suggestion proposes an order that says one thing: its
structured dosage (what the EHR acts on) and its text agree, on the label's
schedule of 40 mg/m2 (or the reduced dose) IV over 3 hours every 3 weeks
[L §2 Dosage and administration]."""
from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest

from tests.conftest import FIXTURES, load_json

SIGN = "/cds-services/ixabepilone-order-sign"

# A draft as EHRs really send one that was cloned from a daily template: once a day,
# orally, with a rate and a second dosage line; the dose the text names is the label's.
DAILY_DRAFT_DOSAGE = [
    {
        "sequence": 1,
        "text": "40 mg/m2 once daily",
        "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"},
                   "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation",
                                        "code": "QD"}]}},
        "route": {"coding": [{"system": "http://snomed.info/sct", "code": "26643006", "display": "Oral route"}]},
        "doseAndRate": [{"doseQuantity": {"value": 40, "unit": "mg/m2", "system": "http://unitsofmeasure.org",
                                          "code": "mg/m2"},
                         "rateQuantity": {"value": 100, "unit": "mL/h", "system": "http://unitsofmeasure.org",
                                          "code": "mL/h"}}],
    },
    {"sequence": 2, "text": "then 40 mg/m2 weekly", "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}}},
]


def suggested_order(client, fixture: str, code: str, dosage: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body = load_json(FIXTURES / "http" / f"{fixture}.json")
    if dosage is not None:
        body["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"] = copy.deepcopy(dosage)
    response = client.post(SIGN, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200
    (card,) = [c for c in response.get_json()["cards"] if c["source"]["topic"]["code"] == code]
    (action,) = card["suggestions"][0]["actions"]
    assert action["type"] == "update"
    return action["resource"]


@pytest.mark.parametrize("dosage", [None, DAILY_DRAFT_DOSAGE], ids=["label-schedule-draft", "daily-template-draft"])
@pytest.mark.parametrize(
    ("fixture", "code", "mg_per_m2"),
    [
        ("hepatic-monotherapy", "hepatic-monotherapy", 32),  # [L §2.4 Table] AST 5 x ULN: 32 mg/m2
        ("cyp3a4-strong-inhibitor", "cyp3a4-strong-inhibitor", 20),  # [L §7] strong inhibitor: 20 mg/m2
    ],
)
def test_reduced_dose_order_is_structured_as_its_text_says(client, fixture, code, mg_per_m2, dosage):
    order = suggested_order(client, fixture, code, dosage)
    MedicationRequest.model_validate(order)  # a valid R4 resource the EHR can take as is
    (instruction,) = order["dosageInstruction"]  # one schedule, not the draft's leftover lines
    assert instruction["text"].startswith(f"{mg_per_m2} mg/m2 IV over 3 hours every 3 weeks")
    assert instruction["doseAndRate"] == [{"doseQuantity": {
        "value": mg_per_m2, "unit": "mg/m2", "system": "http://unitsofmeasure.org", "code": "mg/m2"}}]
    # every 3 weeks, each infusion lasting 3 hours [L §2]
    assert instruction["timing"] == {"repeat": {"frequency": 1, "period": 3, "periodUnit": "wk",
                                                "duration": 3, "durationUnit": "h"}}
    assert instruction["route"]["coding"] == [
        {"system": "http://snomed.info/sct", "code": "47625008", "display": "Intravenous route"}]
