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
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from fhir.resources.R4B.medication import Medication

from .codes import (
    ATC,
    LOCAL_ROUTES,
    LOCAL_WORDS,
    NDC,
    RXNORM,
    SYSTEMIC_ROUTES,
    SYSTEMIC_WORDS,
    canonical_system,
    concept_text,
)
from .codes import SNOMED as SNOMED_CT
from .dates import to_utc
from .facts import Dose
from .jsonlike import ARRAY_TYPES, OBJECT_TYPES
from .references import split_reference

_SYSTEMS = {"rxnorm": RXNORM, "ndc": NDC, "atc": ATC}
_MATCHED_BY = {RXNORM: "rxnorm", NDC: "ndc", ATC: "atc"}

DATA_FILE = Path(__file__).parent / "data" / "drugs.json"
IXABEPILONE = "ixabepilone"  # the drug id of drugs.json the service is about


_NDC_SEGMENTS = (5, 4, 2)  # labeler-product-package digits of the 11-digit (HIPAA) NDC


def normalize_ndc(code: str) -> str | None:
    """An NDC as its 11 digits (5-4-2), from the hyphenated or plain forms.

    Hyphenated 10-digit NDCs come as 4-4-2, 5-3-2 or 5-4-1 and are padded per
    segment (the FDA's 11-digit HIPAA form); an unhyphenated 10-digit code is
    ambiguous and is not guessed at.
    """
    code = code.strip()
    parts = code.split("-")
    if len(parts) == len(_NDC_SEGMENTS) and all(p.isdigit() for p in parts):
        if all(len(p) <= width for p, width in zip(parts, _NDC_SEGMENTS, strict=True)):
            return "".join(p.zfill(width) for p, width in zip(parts, _NDC_SEGMENTS, strict=True))
        return None
    if code.isdigit() and len(code) == sum(_NDC_SEGMENTS):
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
    if not isinstance(concept, OBJECT_TYPES):
        return True
    codings = concept.get("coding")
    if codings is not None and not isinstance(codings, ARRAY_TYPES):
        return True
    for coding in codings or ():
        if not isinstance(coding, OBJECT_TYPES):
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
    display = concept_text(medication.code) or ", ".join(d for d in (concept_text(c) for c in ingredients) if d)
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
    target = split_reference(reference)
    if target is not None and target[0] == "Medication":
        return medications.get(f"Medication/{target[1]}")
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
        return ids, how, concept_text(concept)
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
    value = quantity.value
    value = "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
    return f"{comparator}{value} {quantity.unit or quantity.code or ''}".strip()


def _as_list(value: Any) -> list[Any]:
    """A repeating element, also when an EHR sent one object where FHIR has a list (tolerant reading)."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


# "mg/m²", "mg/m^2", "mg/m2" and "mg/(m2)" are one unit; EHRs write all of them (issue 12 item 5).
def _unit_key(unit: str) -> str:
    return "".join(unit.lower().replace("\u00b2", "2").replace("^", "").replace("(", "").replace(")", "").split())


_MG_FACTOR = {"mg": 1.0, "g": 1000.0}
_MG_PER_M2 = frozenset({"mg/m2", "mg/m.2"})


def _dose_of(quantity: Any, kind: str | None, text: str) -> Dose:
    """One doseQuantity (or a range bound) as a Dose in mg or mg/m2, or with the reason it cannot be read."""
    if quantity is None or quantity.value is None:
        return Dose(raw=text or "(no dose)", problem="the order has no dose quantity", kind=kind)
    raw = _quantity_raw(quantity)
    if quantity.comparator:
        return Dose(raw=raw, problem=f"the dose is not exact ('{quantity.comparator}')", kind=kind)
    value = float(quantity.value)
    if value <= 0:
        return Dose(raw=raw, problem="the dose is not a positive number", kind=kind)
    for unit in (quantity.code, quantity.unit):
        key = _unit_key(unit or "")
        if key in _MG_FACTOR:
            return Dose(raw=raw, mg=value * _MG_FACTOR[key], kind=kind)
        if key in _MG_PER_M2:
            return Dose(raw=raw, mg_per_m2=value, kind=kind)
    unit = (quantity.code or quantity.unit or "").strip()
    return Dose(raw=raw, problem=f"unknown dose unit '{unit}'" if unit else "the dose has no unit", kind=kind)


def _rate_kind(rate: Any) -> str | None:
    concept = getattr(rate, "type", None)
    if concept is None:
        return None
    kind: str | None = next((c.code for c in concept.coding or [] if c.code), None) or concept.text
    return kind


def read_doses(request: Any) -> tuple[Dose, ...]:
    """Every dose an order carries: each doseAndRate entry (doseQuantity, or the top of a doseRange) of each
    dosageInstruction, ordered and calculated alike (Epic sends both: 40 mg/m2 ordered, 120 mg calculated).

    mg, g and mg/m2 are read ("mg/m²" and "mg/m^2" too); any other unit, a
    missing value or a comparator becomes a Dose with ``problem``, so the dose
    check says "cannot verify" instead of passing. Empty when ``request`` is
    not an order at all.
    """
    if request is None or not hasattr(request, "dosageInstruction"):
        return ()
    instructions = _as_list(request.dosageInstruction)
    if not instructions:
        return (Dose(raw="(no dosage)", problem="the order has no dosage instruction"),)
    doses: list[Dose] = []
    for instruction in instructions:
        text = instruction.text or ""
        rates = _as_list(instruction.doseAndRate)
        if not rates:
            doses.append(Dose(raw=text or "(no dose)", problem="the order has no dose quantity"))
            continue
        for rate in rates:
            kind = _rate_kind(rate)
            if rate.doseRange is not None:
                low, high = rate.doseRange.low, rate.doseRange.high
                if high is None:
                    raw = f"{_quantity_raw(low) if low else '?'} or more"
                    doses.append(Dose(raw=raw, problem="the dose range has no upper bound", kind=kind))
                else:
                    doses.append(_dose_of(high, f"{kind} range, upper bound" if kind else "range, upper bound", text))
            elif rate.doseQuantity is not None:
                doses.append(_dose_of(rate.doseQuantity, kind, text))
            else:
                doses.append(Dose(raw=text or "(no dose)", problem="the order has no dose quantity", kind=kind))
    return tuple(doses)


# --------------------------------------------------------------------------- route and dose form


def _word_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    alternation = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(r"(?<![a-z0-9])(" + alternation + r")(?![a-z0-9])")


_SYSTEMIC_WORD = _word_pattern(SYSTEMIC_WORDS)
_LOCAL_WORD = _word_pattern(LOCAL_WORDS)


def _text_exposure(text: str | None) -> str | None:
    """"systemic", "local" or None from the route or form words in a text; both kinds of word: systemic."""
    if not text:
        return None
    lowered = _normalize_text(text)
    if _SYSTEMIC_WORD.search(lowered):
        return "systemic"
    if _LOCAL_WORD.search(lowered):
        return "local"
    return None


def _concept_texts(concept: Any) -> list[str]:
    if concept is None:
        return []
    return [t for t in [concept.text, *(c.display for c in concept.coding or [])] if t]


def _route_exposure(route: Any) -> tuple[str, str] | None:
    for coding in getattr(route, "coding", None) or []:
        if canonical_system(coding.system) == SNOMED_CT and coding.code in SYSTEMIC_ROUTES:
            return "systemic", f"route {coding.display or SYSTEMIC_ROUTES[coding.code]} (SNOMED {coding.code})"
        if canonical_system(coding.system) == SNOMED_CT and coding.code in LOCAL_ROUTES:
            return "local", f"route {coding.display or LOCAL_ROUTES[coding.code]} (SNOMED {coding.code})"
    for text in _concept_texts(route):
        found = _text_exposure(text)
        if found:
            return found, f"route '{text}'"
    return None


def exposure_of(resource: Any, medication: Any | None = None) -> tuple[str | None, str | None]:
    """("systemic" | "local" | None, how it was decided) for a MedicationRequest/Statement.

    Read from the dosage route (SNOMED CT code, else its text), the Medication's
    ``form``, and the product name: an RxNorm clinical or branded drug name ends
    with its dose form ("... Medicated Shampoo", "... Ophthalmic Suspension",
    "... Oral Tablet"). Any systemic sign wins (the conservative reading); None
    when nothing says, and the rules then count the drug as systemic.
    """
    found: list[tuple[str, str]] = []
    dosages = _as_list(getattr(resource, "dosageInstruction", None)) + _as_list(getattr(resource, "dosage", None))
    for dosage in dosages:
        hit = _route_exposure(getattr(dosage, "route", None))
        if hit:
            found.append(hit)
    if medication is not None and getattr(medication, "form", None) is not None:
        for text in _concept_texts(medication.form):
            if (cls := _text_exposure(text)) is not None:
                found.append((cls, f"dose form '{text}' (Medication.form)"))
                break
    names = _concept_texts(getattr(resource, "medicationCodeableConcept", None))
    if medication is not None:
        names += _concept_texts(medication.code)
    for text in names:
        if (cls := _text_exposure(text)) is not None:
            found.append((cls, f"dose form in the product name '{text}'"))
            break
    for cls in ("systemic", "local"):
        reasons = [why for c, why in found if c == cls]
        if reasons:
            return cls, "; ".join(dict.fromkeys(reasons))
    return None, None


# --------------------------------------------------------------------------- when a course ends

_DURATION_DAYS = {"min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.0, "a": 365.0,
                  "minute": 1 / 1440, "minutes": 1 / 1440, "hour": 1 / 24, "hours": 1 / 24, "day": 1.0, "days": 1.0,
                  "week": 7.0, "weeks": 7.0, "month": 30.0, "months": 30.0, "year": 365.0, "years": 365.0}


def _duration(quantity: Any) -> timedelta | None:
    if quantity is None or quantity.value is None:
        return None
    days = _DURATION_DAYS.get((quantity.code or quantity.unit or "").strip().lower())
    return timedelta(days=float(quantity.value) * days) if days is not None else None


def course_end(resource: Any) -> tuple[datetime | None, str | None]:
    """(when the course ended or is due to end, how that was read) for a MedicationRequest or MedicationStatement.

    MedicationRequest: the latest ``timing.repeat.boundsPeriod.end``, else the
    start (or authoredOn) plus ``boundsDuration``, else authoredOn plus the
    dispense request's ``expectedSupplyDuration``. MedicationStatement:
    ``effectivePeriod.end``, else ``effectiveDateTime``. None when the record
    does not say.
    """
    if resource.get_resource_type() == "MedicationStatement":
        period = getattr(resource, "effectivePeriod", None)
        if period is not None and to_utc(period.end):
            return to_utc(period.end), "effective period end"
        if to_utc(getattr(resource, "effectiveDateTime", None)):
            return to_utc(resource.effectiveDateTime), "effective date"
        return None, None
    authored = to_utc(getattr(resource, "authoredOn", None))
    ends: list[tuple[datetime, str]] = []
    for instruction in _as_list(getattr(resource, "dosageInstruction", None)):
        repeat = getattr(getattr(instruction, "timing", None), "repeat", None)
        if repeat is None:
            continue
        bounds = getattr(repeat, "boundsPeriod", None)
        if bounds is not None and (bound_end := to_utc(bounds.end)):
            ends.append((bound_end, "dosing period end"))
            continue
        start = (to_utc(bounds.start) if bounds is not None else None) or authored
        length = _duration(getattr(repeat, "boundsDuration", None))
        if start is not None and length is not None:
            ends.append((start + length, f"{_days_text(length)} course from {start:%Y-%m-%d}"))
    if ends:
        return max(ends, key=lambda e: e[0])
    supply = _duration(getattr(getattr(resource, "dispenseRequest", None), "expectedSupplyDuration", None))
    if authored is not None and supply is not None:
        return authored + supply, f"{_days_text(supply)} supply from {authored:%Y-%m-%d}"
    return None, None


def _days_text(length: timedelta) -> str:
    days = length.total_seconds() / 86400
    return f"{days:g}-day" if days >= 1 else f"{days * 24:g}-hour"
