"""Clinical statuses from Conditions, Observations, Procedures, allergies and immunizations.

Only current, positive evidence is returned; a newer "not pregnant" result
clears older pregnancy evidence here, so the rules never have to.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable

from .codes import CODES, CVX, SNOMED
from .drugs import identify_concept, identify_text
from .facts import Allergy, Evidence
from .labs import _utc, effective_time, loinc_of

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"

# Condition codes [codes.md, Conditions and procedures].
_SNOMED = {
    "pregnancy": {"77386006"},
    "breastfeeding": {"169750002", "413712001"},
    "liver_disease": {"235856003", "59927004", "328383001", "19943007"},
    "gilbert_syndrome": {"27503000"},
    "diabetes": {"73211009", "44054006", "46635009"},
    "neuropathy": {"302226006", "42345000"},
}


def _icd_kind(code: str) -> str | None:
    c = code.upper().replace(".", "")
    if c.startswith("Z331") or (c[:1] == "O" and len(c) >= 3):
        return "pregnancy"
    if c.startswith("Z391"):
        return "breastfeeding"
    if c[:1] == "K" and c[1:3].isdigit() and 70 <= int(c[1:3]) <= 77:
        return "liver_disease"
    if c.startswith("E80") and c[3:4] == "4":
        return "gilbert_syndrome"
    if c[:1] == "E" and c[1:3].isdigit() and 8 <= int(c[1:3]) <= 13:
        return "diabetes"
    if c[:1] == "G" and c[1:3].isdigit() and 60 <= int(c[1:3]) <= 64:
        return "neuropathy"
    return None


def _code(concept: Any, system: str) -> list[str]:
    return [c.code for c in (concept.coding if concept else None) or [] if c.system == system and c.code]


def _status(concept: Any) -> str | None:
    codes = [c.code for c in (concept.coding if concept else None) or []]
    return codes[0] if codes else None


def condition_evidence(conditions: Iterable[Any]) -> dict[str, list[Evidence]]:
    out: dict[str, list[Evidence]] = {k: [] for k in _SNOMED}
    for cond in conditions:
        if _status(cond.clinicalStatus) not in ("active", "recurrence", "relapse"):
            continue
        if _status(cond.verificationStatus) in ("entered-in-error", "refuted"):
            continue
        label = (cond.code.text if cond.code else None) or next(
            (c.display for c in (cond.code.coding if cond.code else None) or [] if c.display), "Condition")
        date = _utc(cond.onsetDateTime) or _utc(cond.recordedDate)
        ref = f"Condition/{cond.id}" if cond.id else None
        kinds = {k for code in _code(cond.code, SNOMED) for k, codes in _SNOMED.items() if code in codes}
        kinds |= {k for code in _code(cond.code, ICD10) if (k := _icd_kind(code))}
        for kind in kinds:
            out[kind].append(Evidence(label, date, ref))
    return out


_PREGNANT = {"77386006", "LA15173-0"}
_NOT_PREGNANT = {"60001007", "LA26683-5"}
_BREASTFEEDING = {"LA29252-6"}
_POSITIVE = {"10828004"}
_NEGATIVE = {"260385009"}
# hCG above this is a positive quantitative test [codes.md, marked verify].
_HCG_POSITIVE_MIU_ML = 25


def reproductive_observations(observations: Iterable[Any], now: datetime) -> tuple[list[Evidence], list[Evidence], list[tuple[datetime, bool]]]:
    """(pregnancy evidence, breastfeeding evidence, dated pregnancy verdicts for clearing)."""
    repro = CODES["reproductive"]
    pregnancy: list[Evidence] = []
    breastfeeding: list[Evidence] = []
    verdicts: list[tuple[datetime, bool]] = []
    for obs in observations:
        if obs.status not in ("final", "amended", "corrected"):
            continue
        code = loinc_of(obs)
        when = effective_time(obs)
        ref = f"Observation/{obs.id}" if obs.id else None
        answers = {c.code for c in (obs.valueCodeableConcept.coding if obs.valueCodeableConcept else None) or []}
        text = ((obs.valueCodeableConcept.text if obs.valueCodeableConcept else None) or obs.valueString or "").lower()
        if code in repro["pregnancy_status"]:
            if answers & _PREGNANT:
                pregnancy.append(Evidence("Pregnancy status: pregnant", when, ref, code))
                verdicts.append((when, True)) if when else None
            elif answers & _NOT_PREGNANT and when:
                verdicts.append((when, False))
        elif code in repro["hcg"]:
            positive = bool(answers & _POSITIVE) or text.startswith("positive")
            negative = bool(answers & _NEGATIVE) or text.startswith("negative")
            q = obs.valueQuantity
            if q is not None and q.value is not None and (q.code or q.unit) in ("m[IU]/mL", "mIU/mL", "[IU]/L", "IU/L"):
                positive = float(q.value) > _HCG_POSITIVE_MIU_ML
                negative = not positive
            if positive and when and now - when <= timedelta(days=7):
                pregnancy.append(Evidence("Positive hCG pregnancy test", when, ref, code))
                verdicts.append((when, True))
            elif negative and when:
                verdicts.append((when, False))
        elif code in repro["breastfeeding_status"] and answers & _BREASTFEEDING:
            breastfeeding.append(Evidence("Breastfeeding status: currently breastfeeding", when, ref, code))
    return pregnancy, breastfeeding, verdicts


def allergies(resources: Iterable[Any]) -> list[Allergy]:
    out = []
    for allergy in resources:
        if _status(allergy.verificationStatus) in ("entered-in-error", "refuted"):
            continue
        if _status(allergy.clinicalStatus) in ("inactive", "resolved"):
            continue
        ids, _ = identify_concept(allergy.code)
        texts = [allergy.code.text if allergy.code else None]
        for reaction in allergy.reaction or []:
            for substance in [reaction.substance] if reaction.substance else []:
                more, _ = identify_concept(substance)
                ids |= more
        ids |= frozenset().union(*(identify_text(t) for t in texts if t))
        if not ids:
            continue
        display = (allergy.code.text if allergy.code else None) or ", ".join(sorted(ids))
        out.append(Allergy(frozenset(ids), display, allergy.criticality,
                           f"AllergyIntolerance/{allergy.id}" if allergy.id else None, _utc(allergy.recordedDate)))
    return out


def radiotherapy(procedures: Iterable[Any]) -> list[Evidence]:
    codes = set(CODES["radiotherapy_snomed"])
    out = []
    for proc in procedures:
        if proc.status not in ("completed", "in-progress"):
            continue
        if not set(_code(proc.code, SNOMED)) & codes:
            continue
        date = _utc(proc.performedDateTime) or (
            _utc(proc.performedPeriod.end or proc.performedPeriod.start) if proc.performedPeriod else None)
        label = (proc.code.text if proc.code else None) or "Radiotherapy"
        out.append(Evidence(label, date, f"Procedure/{proc.id}" if proc.id else None))
    return out


def live_vaccines(immunizations: Iterable[Any]) -> list[Evidence]:
    live = set(CODES["live_vaccine_cvx"])
    out = []
    for imm in immunizations:
        if imm.status != "completed":
            continue
        found = [c for c in _code(imm.vaccineCode, CVX) if c.zfill(2) in live]
        if not found:
            continue
        label = imm.vaccineCode.text or next((c.display for c in imm.vaccineCode.coding or [] if c.display), "Live vaccine")
        out.append(Evidence(label, _utc(imm.occurrenceDateTime), f"Immunization/{imm.id}" if imm.id else None, found[0]))
    return out
