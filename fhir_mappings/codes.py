"""The code lists the mappings read, loaded once from ``data/codes.json``.

One source of truth: the prefetch queries in discovery and the mappings that
read the answers use the same lists.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
CVX = "http://hl7.org/fhir/sid/cvx"

CODES: dict[str, Any] = json.loads((Path(__file__).parent / "data" / "codes.json").read_text())
ANALYTE_BY_LOINC: dict[str, str] = {
    code: analyte for analyte, spec in CODES["analytes"].items() for code in spec["loinc"]
}


def observation_query_codes(group: str) -> list[str]:
    """``system|code`` tokens for a prefetch group: labs, vitals or reproductive."""
    if group == "reproductive":
        codes = [c for values in CODES["reproductive"].values() for c in values]
    else:
        codes = [c for spec in CODES["analytes"].values() if spec["group"] == group for c in spec["loinc"]]
        if not codes:
            raise KeyError(group)
    return [f"{LOINC}|{code}" for code in codes]


def procedure_query_codes() -> list[str]:
    return [f"{SNOMED}|{code}" for code in CODES["radiotherapy_snomed"]]
