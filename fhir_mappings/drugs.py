"""Which drugs a medication is, from RxNorm, NDC, ATC or, last, its name.

EHRs send codes from many levels (ingredient, brand, clinical or branded
drug, NDC in several spellings, ATC); codes we could not confirm are backed by
name matching on ``text``/``display`` (codes.md), on word boundaries so
"Ixempra" never matches inside another word. The table lives in
``data/drugs.json`` and is compiled once, at import, into dicts and one regex.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from fhir.resources.R4B.medication import Medication

from .codes import ATC, NDC, RXNORM, canonical_system
from .facts import Dose

_SYSTEMS = {"rxnorm": RXNORM, "ndc": NDC, "atc": ATC}
_MATCHED_BY = {RXNORM: "rxnorm", NDC: "ndc", ATC: "atc"}

DATA_FILE = Path(__file__).parent / "data" / "drugs.json"


def normalize_ndc(code: str) -> str | None:
    """An NDC as its 11 digits (5-4-2), from the hyphenated or plain forms.

    Hyphenated 10-digit NDCs come as 4-4-2, 5-3-2 or 5-4-1 and are padded per
    segment (the FDA's 11-digit HIPAA form); an unhyphenated 10-digit code is
    ambiguous and is not guessed at.
    """
    code = code.strip()
    parts = code.split("-")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        labeler, product, package = parts
        if len(labeler) <= 5 and len(product) <= 4 and len(package) <= 2:
            return labeler.zfill(5) + product.zfill(4) + package.zfill(2)
        return None
    if code.isdigit() and len(code) == 11:
        return code
    return None


def _code_key(system: str, code: str) -> tuple[str, str] | None:
    if system == NDC:
        digits = normalize_ndc(code)
        return (NDC, digits) if digits else None
    if system == ATC:
        return ATC, code.strip().upper()
    return system, code.strip()


def _normalize_text(text: str) -> str:
    return " ".join(text.lower().replace("\u2019", "'").replace("\u2018", "'").split())


def _load(path: Path) -> tuple[dict[tuple[str, str], frozenset[str]], dict[str, frozenset[str]], dict[str, str], str]:
    """Code and name tables, and each drug's display name, from the data file; a malformed entry fails the import."""
    data = json.loads(path.read_text())
    drugs: dict[str, Any] = data["drugs"]
    by_code: dict[tuple[str, str], set[str]] = {}
    by_name: dict[str, set[str]] = {}
    for drug, spec in drugs.items():
        unknown = set(spec) - {"names", "codes", "source", "role"}
        if unknown or not spec.get("source") or not spec.get("names"):
            raise ValueError(f"drugs.json: entry {drug!r} needs names and a source (unknown fields: {sorted(unknown)})")
        for name in spec["names"]:
            by_name.setdefault(_normalize_text(name), set()).add(drug)
        for entry in spec["codes"]:
            if entry["system"] not in _SYSTEMS or not isinstance(entry.get("verified"), bool):
                raise ValueError(f"drugs.json: {drug!r} code {entry!r} needs a known system and verified true/false")
            key = _code_key(_SYSTEMS[entry["system"]], entry["code"])
            if key is None:
                raise ValueError(f"drugs.json: {drug!r} code {entry['code']!r} is not a valid {entry['system']} code")
            by_code.setdefault(key, set()).add(drug)
    for product in data.get("products", []):
        if not product.get("source") or not set(product["drugs"]) <= set(drugs):
            raise ValueError(f"drugs.json: product {product.get('names')} needs a source and known drug ids")
        for name in product["names"]:
            by_name.setdefault(_normalize_text(name), set()).update(product["drugs"])
    # Longest names first, so "polyoxyl 35 castor oil" wins over "castor oil".
    alternation = "|".join(re.escape(n) for n in sorted(by_name, key=len, reverse=True))
    pattern = r"(?<![a-z0-9])(" + alternation + r")(?![a-z0-9])"
    return (
        {k: frozenset(v) for k, v in by_code.items()},
        {k: frozenset(v) for k, v in by_name.items()},
        {drug: spec["names"][0] for drug, spec in drugs.items()},
        pattern,
    )


_BY_CODE, _BY_NAME, _DISPLAY, _NAME_PATTERN = _load(DATA_FILE)
_NAME_RE = re.compile(_NAME_PATTERN)
_DRUG_IDS = frozenset(_DISPLAY)


def drug_name(drug_id: str) -> str:
    """The name to show for a drug id of drugs.json ("st-johns-wort" -> "st john's wort")."""
    return _DISPLAY.get(drug_id, drug_id)


def known_drug_ids() -> frozenset[str]:
    """Every id a DrugUse or Allergy may carry (the keys of drugs.json)."""
    return _DRUG_IDS


@lru_cache(maxsize=4096)
def identify_text(text: str | None) -> frozenset[str]:
    """Drug ids named in free text (case-insensitive, whole words, brands too)."""
    if not text:
        return frozenset()
    found: set[str] = set()
    for match in _NAME_RE.finditer(_normalize_text(text)):
        found |= _BY_NAME[match.group(1)]
    return frozenset(found)


def may_name_known_drug(concept: Any) -> bool:
    """Could this raw ``medicationCodeableConcept`` JSON name a drug of drugs.json?

    Decided before parsing, so that a long list of medications we have no
    rule for (most of a large chart) is not validated for nothing; the same
    codes, aliases and names as :func:`identify_concept`. Anything that is
    not a plain CodeableConcept answers True, so the parser still reports it.
    """
    if not isinstance(concept, Mapping):
        return True
    codings = concept.get("coding")
    if codings is not None and not isinstance(codings, list):
        return True
    for coding in codings or ():
        if not isinstance(coding, Mapping):
            return True
        system, code, display = coding.get("system"), coding.get("code"), coding.get("display")
        if isinstance(system, str) and isinstance(code, str):
            key = _code_key(canonical_system(system) or system, code)
            if key and key in _BY_CODE:
                return True
        if isinstance(display, str) and identify_text(display):
            return True
    text = concept.get("text")
    return isinstance(text, str) and bool(identify_text(text))


def may_name_drug(raw: Any, drug_id: str) -> bool:
    """Does a raw resource (as JSON, possibly not valid FHIR) name ``drug_id`` by a known code or name anywhere?

    For resources that could not be parsed: deciding whether their loss must be reported.
    """
    if identify_text(json.dumps(raw, ensure_ascii=False, default=str)) & {drug_id}:
        return True
    stack = [raw]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            system, code = node.get("system"), node.get("code")
            if isinstance(system, str) and isinstance(code, str):
                key = _code_key(canonical_system(system) or system, code)
                if key and drug_id in _BY_CODE.get(key, ()):
                    return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _system(coding: Any) -> str | None:
    return canonical_system(coding.system) if coding.system else None


def _by_codes(concept: Any) -> tuple[set[str], str | None]:
    found: set[str] = set()
    how: str | None = None
    for coding in (concept.coding if concept is not None else None) or []:
        system, code = _system(coding), coding.code
        if not system or not code:
            continue
        key = _code_key(system, code)
        ids = _BY_CODE.get(key) if key else None
        if ids:
            found |= ids
            how = how or _MATCHED_BY[system]
    return found, how


def _by_names(concept: Any) -> frozenset[str]:
    if concept is None:
        return frozenset()
    names = identify_text(concept.text)
    for coding in concept.coding or []:
        names |= identify_text(coding.display)
    return names


def identify_concept(concept: Any) -> tuple[frozenset[str], str | None]:
    """Drug ids of a CodeableConcept, and how they were matched.

    A known code wins; only when no coding carries a code we know are
    ``text`` and the ``display`` values read, so an order coded as
    dexamethasone whose text mentions ixabepilone stays dexamethasone.
    """
    found, how = _by_codes(concept)
    if found:
        return frozenset(found), how
    names = _by_names(concept)
    return names, ("name" if names else None)


def _display(concept: Any) -> str:
    if concept is None:
        return ""
    if concept.text:
        return concept.text
    return next((c.display for c in concept.coding or [] if c.display), "")


def _medication_drugs(medication: Any) -> tuple[frozenset[str], str | None, str]:
    """A Medication by its own code, else by its ingredients' codes, else by names."""
    ingredients = [getattr(i, "itemCodeableConcept", None) for i in medication.ingredient or []]
    ids, how = _by_codes(medication.code)
    for concept in ingredients:
        more, _ = _by_codes(concept)
        if more and not how:
            how = "ingredient"
        ids |= more
    if not ids:
        ids = set(_by_names(medication.code))
        for concept in ingredients:
            ids |= _by_names(concept)
        how = "name" if ids else None
    display = _display(medication.code) or ", ".join(d for d in (_display(c) for c in ingredients) if d)
    return frozenset(ids), how, display


def _resolve(reference: str, resource: Any, medications: Mapping[str, Any]) -> Any:
    """The Medication a reference points at: contained (#id) or among the prefetched ones."""
    if reference.startswith("#"):
        wanted = reference[1:]
        return next(
            (c for c in getattr(resource, "contained", None) or []
             if getattr(c, "id", None) == wanted and c.get_resource_type() == "Medication"),
            None,
        )
    found = medications.get(reference)
    if found is not None:
        return found
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Medication":
        return medications.get(f"Medication/{parts[-1]}")
    return None


def drugs_of(resource: Any, medications: Mapping[str, Medication]) -> tuple[frozenset[str], str | None, str]:
    """(drug ids, matched_by, display) of a MedicationRequest/Statement/Administration or Medication.

    ``medications`` maps "Medication/<id>" to the Medications prefetched or
    included alongside; a reference to a contained one ("#med") is read from
    the resource itself.
    """
    if resource.get_resource_type() == "Medication":
        return _medication_drugs(resource)
    concept = getattr(resource, "medicationCodeableConcept", None)
    if concept is not None:
        ids, how = identify_concept(concept)
        return ids, how, _display(concept)
    reference = getattr(resource, "medicationReference", None)
    if reference is None:
        return frozenset(), None, ""
    medication = _resolve(reference.reference, resource, medications) if reference.reference else None
    if medication is not None:
        ids, how, display = _medication_drugs(medication)
        if ids:
            return ids, how, display or reference.display or ""
        names = identify_text(reference.display)
        return names, ("name" if names else None), display or reference.display or ""
    names = identify_text(reference.display)
    return names, ("name" if names else None), reference.display or ""


def medication_of(resource: Any, medications: Mapping[str, Any]) -> Any | None:
    """The Medication a request/statement's medicationReference resolves to (contained or prefetched), or None."""
    reference = getattr(resource, "medicationReference", None)
    if reference is None or not reference.reference:
        return None
    return _resolve(reference.reference, resource, medications)


def has_medication(resource: Any) -> bool:
    """True when an order names a medication at all (a code, text or a reference)."""
    return bool(getattr(resource, "medicationCodeableConcept", None) or getattr(resource, "medicationReference", None))


def _quantity_raw(quantity: Any) -> str:
    comparator = quantity.comparator or ""
    value = "" if quantity.value is None else f"{quantity.value:g}" if isinstance(quantity.value, float) else str(quantity.value)
    return f"{comparator}{value} {quantity.unit or quantity.code or ''}".strip()


def read_dose(request: Any) -> Dose | None:
    """The order's dose from ``dosageInstruction[0].doseAndRate[0].doseQuantity``.

    mg and mg/m2 (UCUM) are read, g is converted to mg; any other unit, a
    missing value or a dose range becomes a Dose with ``problem``, so the dose
    check says "cannot verify" instead of passing. None when ``request`` is
    not an order at all.
    """
    if request is None or not hasattr(request, "dosageInstruction"):
        return None
    instructions = request.dosageInstruction or []
    if not instructions:
        return Dose(raw="(no dosage)", problem="the order has no dosage instruction")
    first = instructions[0]
    text = first.text or ""
    rates = first.doseAndRate or []
    if rates and rates[0].doseRange is not None:
        low, high = rates[0].doseRange.low, rates[0].doseRange.high
        raw = f"{_quantity_raw(low) if low else '?'} to {_quantity_raw(high) if high else '?'}"
        return Dose(raw=raw, problem="the dose is a range, not one dose")
    quantity = rates[0].doseQuantity if rates else None
    if quantity is None or quantity.value is None:
        return Dose(raw=text or "(no dose)", problem="the order has no dose quantity")
    raw = _quantity_raw(quantity)
    if quantity.comparator:
        return Dose(raw=raw, problem=f"the dose is not exact ('{quantity.comparator}')")
    value = float(quantity.value)
    if value <= 0:
        return Dose(raw=raw, problem="the dose is not a positive number")
    unit = (quantity.code or quantity.unit or "").strip()
    if unit == "mg":
        return Dose(raw=raw, mg=value)
    if unit == "g":
        return Dose(raw=raw, mg=value * 1000)
    if unit == "mg/m2":
        return Dose(raw=raw, mg_per_m2=value)
    return Dose(raw=raw, problem=f"unknown dose unit '{unit}'" if unit else "the dose has no unit")
