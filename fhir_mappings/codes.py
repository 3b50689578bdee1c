"""The code lists the mappings read, loaded once from ``data/codes.json``.

One source of truth: the prefetch queries in discovery and the mappings that
read the answers use the same lists.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from .facts import ANALYTES

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
CVX = "http://hl7.org/fhir/sid/cvx"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
ATC = "http://www.whocc.no/atc"
UCUM = "http://unitsofmeasure.org"

# Other spellings of the same code systems that EHRs send: the HL7 OIDs (as "urn:oid:...";
# FHIR R4 NamingSystem "terminologies", https://hl7.org/fhir/R4/namingsystem-terminologies.html,
# and HL7's OID registry for ICD-10-CM 2.16.840.1.113883.6.90) and the canonical URI with a
# trailing slash. Every comparison of a coding's system goes through canonical_system().
_OIDS = {
    LOINC: "2.16.840.1.113883.6.1",
    SNOMED: "2.16.840.1.113883.6.96",
    RXNORM: "2.16.840.1.113883.6.88",
    ICD10CM: "2.16.840.1.113883.6.90",
    CVX: "2.16.840.1.113883.12.292",
    NDC: "2.16.840.1.113883.6.69",
    ATC: "2.16.840.1.113883.6.73",
    UCUM: "2.16.840.1.113883.6.8",
}
SYSTEM_ALIASES: dict[str, str] = {
    **{f"urn:oid:{oid}": uri for uri, oid in _OIDS.items()},
    **{f"{uri}/": uri for uri in _OIDS},
}


def canonical_system(system: str | None) -> str | None:
    """A coding system as its canonical FHIR URI (OIDs and trailing slashes mapped); None stays None."""
    if system is None:
        return None
    return SYSTEM_ALIASES.get(system, system)

DATA_FILE = Path(__file__).parent / "data" / "codes.json"
CODES: dict[str, Any] = json.loads(DATA_FILE.read_text())


def _check(codes: dict[str, Any]) -> None:
    """Fail the import on a data file that would silently match nothing."""
    if set(codes["analytes"]) != set(ANALYTES):
        raise ValueError(f"codes.json analytes {sorted(codes['analytes'])} differ from facts.ANALYTES")
    for section in (codes["analytes"], codes["reproductive"], codes["conditions"]):
        for name, spec in section.items():
            if not spec.get("source"):
                raise ValueError(f"codes.json: {name} has no source")
    exposure = codes["exposure"]
    if not exposure["routes"].get("source") or not exposure["words"].get("source"):
        raise ValueError("codes.json: exposure routes and words need a source")
    if set(exposure["routes"]["systemic"]) & set(exposure["routes"]["local"]):
        raise ValueError("codes.json: a route code cannot be both systemic and local")
    for name, spec in codes["analytes"].items():
        if spec["group"] not in ("labs", "vitals") or not spec["loinc"]:
            raise ValueError(f"codes.json: analyte {name} needs a group (labs/vitals) and LOINC codes")


_check(CODES)

ANALYTE_BY_LOINC: dict[str, str] = {
    code: analyte for analyte, spec in CODES["analytes"].items() for code in spec["loinc"]
}
REPRODUCTIVE_LOINC: dict[str, str] = {
    code: kind for kind, spec in CODES["reproductive"].items() for code in spec["loinc"]
}
OBSERVATION_LOINC: frozenset[str] = frozenset(ANALYTE_BY_LOINC) | frozenset(REPRODUCTIVE_LOINC)
RADIOTHERAPY_SNOMED: frozenset[str] = frozenset(CODES["radiotherapy"]["snomed"])
LIVE_VACCINE_CVX: frozenset[str] = frozenset(CODES["live_vaccines"]["cvx"])
CONDITION_SNOMED: dict[str, frozenset[str]] = {
    kind: frozenset(spec["snomed"]) for kind, spec in CODES["conditions"].items()
}


def _icd_key(code: str) -> str:
    return code.upper().replace(".", "").strip()


# (kind, prefix) and (kind, first category, last category), compared on normalised codes.
_ICD_PREFIXES = [(kind, _icd_key(r["prefix"])) for kind, spec in CODES["conditions"].items()
                 for r in spec["icd10"] if "prefix" in r]
_ICD_RANGES = [(kind, _icd_key(r["from"]), _icd_key(r["to"])) for kind, spec in CODES["conditions"].items()
               for r in spec["icd10"] if "from" in r]
# Codes inside a kind's ranges that are not that kind (e.g. "complicating the puerperium" within O00-O9A).
_ICD_EXCLUDED = {
    kind: tuple(_icd_key(c) for c in spec.get("icd10_exclude", ())) for kind, spec in CODES["conditions"].items()
}


_ICD_CATEGORY = 3  # an ICD-10-CM category is its first three characters ("C50")


@lru_cache(maxsize=4096)  # the same diagnosis codes recur across records: each is matched once
def icd10_kinds(code: str) -> frozenset[str]:
    """The condition kinds an ICD-10-CM code falls in (by prefix or 3-character category range, less exclusions)."""
    key = _icd_key(code)
    category = key[:_ICD_CATEGORY]
    kinds = {kind for kind, prefix in _ICD_PREFIXES if key.startswith(prefix)}
    kinds |= {kind for kind, low, high in _ICD_RANGES if len(category) == _ICD_CATEGORY and low <= category <= high}
    return frozenset(kind for kind in kinds if not key.startswith(_ICD_EXCLUDED[kind]))


# Route of administration (SNOMED CT) and the words of route texts and dose-form names: issue 12 item 3.
SYSTEMIC_ROUTES: dict[str, str] = dict(CODES["exposure"]["routes"]["systemic"])
LOCAL_ROUTES: dict[str, str] = dict(CODES["exposure"]["routes"]["local"])
SYSTEMIC_WORDS: tuple[str, ...] = tuple(CODES["exposure"]["words"]["systemic"])
LOCAL_WORDS: tuple[str, ...] = tuple(CODES["exposure"]["words"]["local"])


def cvx_key(code: str) -> str:
    """CVX codes are sent as "3" or "03": compare them two digits wide."""
    return code.strip().zfill(2)


def observation_query_codes(group: str) -> list[str]:
    """``system|code`` tokens for a prefetch group: "labs", "vitals" or "reproductive"."""
    if group == "reproductive":
        codes = [c for spec in CODES["reproductive"].values() for c in spec["loinc"]]
    else:
        codes = [c for spec in CODES["analytes"].values() if spec["group"] == group for c in spec["loinc"]]
        if not codes:
            raise KeyError(group)
    return [f"{LOINC}|{code}" for code in codes]


def procedure_query_codes() -> list[str]:
    """``system|code`` tokens of the radiotherapy procedures."""
    return [f"{SNOMED}|{code}" for code in CODES["radiotherapy"]["snomed"]]


def concept_text(concept: Any, fallback: str = "") -> str:
    """What a CodeableConcept says in words: its text, else its first coding's display, else ``fallback``."""
    if concept is None:
        return fallback
    text: str = concept.text or next((c.display for c in concept.coding or [] if c.display), fallback)
    return text
