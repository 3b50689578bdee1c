"""Which drugs a medication is, from RxNorm, NDC, ATC or, last, its name.

EHRs send codes from many levels (ingredient, clinical drug, branded drug,
NDC); codes we could not confirm are backed by name matching on
``text``/``display`` (codes.md), on word boundaries so "Ixempra" never
matches inside another word.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

from .facts import Dose

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
ATC = "http://www.whocc.no/atc"

_TABLE = json.loads((Path(__file__).parent / "data" / "drugs.json").read_text())["drugs"]
_BY_CODE: dict[tuple[str, str], set[str]] = {}
for _drug, _spec in _TABLE.items():
    for _system, _key in ((RXNORM, "rxnorm"), (NDC, "ndc"), (ATC, "atc")):
        for _code in _spec[_key]:
            _BY_CODE.setdefault((_system, _code.replace("-", "") if _system == NDC else _code), set()).add(_drug)
_NAMES = [(drug, re.compile(r"(?<![a-z0-9])" + re.escape(name) + r"(?![a-z0-9])"))
          for drug, spec in _TABLE.items() for name in spec["names"]]


def known_drug_ids() -> frozenset[str]:
    return frozenset(_TABLE)


def identify_text(text: str | None) -> frozenset[str]:
    if not text:
        return frozenset()
    lowered = text.lower()
    return frozenset(drug for drug, pattern in _NAMES if pattern.search(lowered))


def identify_concept(concept: Any) -> tuple[frozenset[str], str | None]:
    """Drug ids of a CodeableConcept, and how they were matched."""
    if concept is None:
        return frozenset(), None
    found: set[str] = set()
    how = None
    for coding in concept.coding or []:
        system, code = coding.system, coding.code
        if not code:
            continue
        key = (system, code.replace("-", "") if system == NDC else code)
        if key in _BY_CODE:
            found |= _BY_CODE[key]
            how = how or {RXNORM: "rxnorm", NDC: "ndc", ATC: "atc"}.get(system)
    if found:
        return frozenset(found), how
    names = identify_text(concept.text) | frozenset().union(
        *(identify_text(c.display) for c in concept.coding or [])
    )
    return names, "name" if names else None


def _display(concept: Any) -> str:
    if concept is None:
        return ""
    if concept.text:
        return concept.text
    return next((c.display for c in concept.coding or [] if c.display), "")


def drugs_of(resource: Any, medications: Mapping[str, Any]) -> tuple[frozenset[str], str | None, str]:
    """(drug ids, matched_by, display) of a MedicationRequest/Statement/Medication."""
    if resource.get_resource_type() == "Medication":
        ids, how = identify_concept(resource.code)
        display = _display(resource.code)
        for ingredient in resource.ingredient or []:
            more, more_how = identify_concept(getattr(ingredient, "itemCodeableConcept", None))
            if more and not ids:
                how = "ingredient" if more_how != "name" else "name"
            ids = ids | more
        return ids, how, display
    concept = getattr(resource, "medicationCodeableConcept", None)
    if concept is not None:
        ids, how = identify_concept(concept)
        return ids, how, _display(concept)
    reference = getattr(resource, "medicationReference", None)
    if reference is None or not reference.reference:
        return frozenset(), None, ""
    ref = reference.reference
    medication = None
    if ref.startswith("#"):
        medication = next((c for c in resource.contained or [] if getattr(c, "id", None) == ref[1:]), None)
    else:
        medication = medications.get(ref) or medications.get("Medication/" + ref.rsplit("/", 1)[-1])
    if medication is not None:
        return drugs_of(medication, medications)
    names = identify_text(reference.display)
    return names, "name" if names else None, reference.display or ""


def read_dose(request: Any) -> Dose | None:
    """The first dose of an order, in mg or mg/m2; anything else says why not."""
    instructions = getattr(request, "dosageInstruction", None) or []
    if not instructions:
        return Dose(raw="(no dosage)", problem="the order has no dose")
    text = instructions[0].text or ""
    rates = instructions[0].doseAndRate or []
    quantity = rates[0].doseQuantity if rates else None
    if quantity is None or quantity.value is None:
        return Dose(raw=text or "(no dose)", problem="the order has no dose quantity")
    unit = (quantity.code or quantity.unit or "").strip()
    value = float(quantity.value)
    raw = f"{quantity.value} {quantity.unit or quantity.code or ''}".strip()
    if unit == "mg":
        return Dose(raw=raw, mg=value)
    if unit == "g":
        return Dose(raw=raw, mg=value * 1000)
    if unit in ("mg/m2", "mg/m^2"):
        return Dose(raw=raw, mg_per_m2=value)
    return Dose(raw=raw, problem=f"unknown dose unit '{unit}'")
