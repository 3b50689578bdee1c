"""Realistic synthetic patients for the benchmarks, as CDS Hooks request bodies.

A benchmark on the three-resource sample would measure Flask, not the checks:
real oncology patients arrive with years of weekly blood counts, a score of
active medications, problems, allergies and immunizations. This module builds
such a record deterministically (a seed, a size, a "now") so the load
generator, the FHIR stub and the profiler all see the very same patient.

Codes are real (LOINC, UCUM, RxNorm clinical drugs, SNOMED CT, CVX) so the
mappings do the work they do in production; values are in normal ranges, so
the checks run to the end rather than stopping at a missing lab. This is
benchmark data, not clinical knowledge: nothing here is a threshold.
"""
from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
CVX = "http://hl7.org/fhir/sid/cvx"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
BASE_URL = "https://ehr.example.org/fhir"

# Prefetch keys, in the order of the service's discovery document.
PREFETCH_KEYS = (
    "patient",
    "medicationRequests",
    "medicationStatements",
    "labs",
    "vitals",
    "reproductive",
    "conditions",
    "allergies",
    "procedures",
    "immunizations",
)

# Share of the record (after the Patient) per key: labs dominate a real chart.
_SHARES: Mapping[str, float] = {
    "labs": 0.60,
    "vitals": 0.15,
    "medicationRequests": 0.10,
    "medicationStatements": 0.03,
    "conditions": 0.04,
    "allergies": 0.015,
    "procedures": 0.02,
    "immunizations": 0.03,
    "reproductive": 0.015,
}

# (LOINC, display, UCUM unit, typical value, spread) -- one blood draw (CBC + LFTs).
LAB_PANEL: tuple[tuple[str, str, str, float, float], ...] = (
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 6.4, 1.2),
    ("751-8", "Neutrophils [#/volume] in Blood by Automated count", "10*3/uL", 3.9, 0.8),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 245.0, 40.0),
    ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 24.0, 5.0),
    ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 22.0, 5.0),
    ("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", "mg/dL", 0.6, 0.15),
)
# Reference ranges as a lab reports them (printed on the result, not used by us).
_LAB_RANGES: Mapping[str, tuple[float, float]] = {
    "6690-2": (4.0, 11.0),
    "751-8": (1.8, 7.7),
    "777-3": (150.0, 400.0),
    "1920-8": (10.0, 40.0),
    "1742-6": (7.0, 56.0),
    "1975-2": (0.1, 1.2),
}
VITALS: tuple[tuple[str, str, str, float, float], ...] = (
    ("8302-2", "Body height", "cm", 165.0, 0.3),
    ("29463-7", "Body weight", "kg", 68.0, 1.5),
    ("8310-5", "Body temperature", "Cel", 36.8, 0.2),
)

# Active outpatient medications (RxNorm SCD codes as found in EHR exports such
# as Synthea's; displays as RxNorm prints them). None interacts with ixabepilone
# through CYP3A4, so cards come from the draft order itself, as usual.
MEDICATIONS: tuple[tuple[str, str, str], ...] = (
    ("314076", "lisinopril 10 MG Oral Tablet", "1 tablet by mouth daily"),
    ("197361", "amlodipine 5 MG Oral Tablet", "1 tablet by mouth daily"),
    ("860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet", "1 tablet by mouth with dinner"),
    ("310798", "hydrochlorothiazide 25 MG Oral Tablet", "1 tablet by mouth every morning"),
    ("259255", "atorvastatin 80 MG Oral Tablet", "1 tablet by mouth at bedtime"),
    ("312961", "simvastatin 20 MG Oral Tablet", "1 tablet by mouth at bedtime"),
    ("309362", "clopidogrel 75 MG Oral Tablet", "1 tablet by mouth daily"),
    ("243670", "aspirin 81 MG Oral Tablet", "1 tablet by mouth daily"),
    ("866414", "24 HR metoprolol succinate 100 MG Extended Release Oral Tablet", "1 tablet by mouth daily"),
    ("855332", "warfarin sodium 5 MG Oral Tablet", "as directed by the anticoagulation clinic"),
    ("313782", "acetaminophen 325 MG Oral Tablet", "2 tablets by mouth every 6 hours as needed"),
    ("310965", "ibuprofen 200 MG Oral Tablet", "1 tablet by mouth every 8 hours as needed"),
    ("849574", "naproxen sodium 220 MG Oral Tablet", "1 tablet by mouth twice daily as needed"),
    ("310325", "ferrous sulfate 325 MG Oral Tablet", "1 tablet by mouth daily"),
    ("312617", "prednisone 5 MG Oral Tablet", "1 tablet by mouth daily"),
    ("308182", "amoxicillin 250 MG Oral Capsule", "1 capsule by mouth three times daily"),
    ("198211", "simvastatin 40 MG Oral Tablet", "1 tablet by mouth at bedtime"),
    ("308136", "amlodipine 2.5 MG Oral Tablet", "1 tablet by mouth daily"),
    ("1049909", "diphenhydramine hydrochloride 25 MG Oral Capsule", "2 capsules by mouth at bedtime as needed"),
    ("310273", "famotidine 20 MG Oral Tablet", "1 tablet by mouth twice daily"),
)

# (SNOMED, display, ICD-10-CM, ICD display)
CONDITIONS: tuple[tuple[str, str, str, str], ...] = (
    ("254837009", "Malignant neoplasm of breast", "C50.911",
     "Malignant neoplasm of unspecified site of right female breast"),
    ("38341003", "Hypertensive disorder, systemic arterial", "I10", "Essential (primary) hypertension"),
    ("55822004", "Hyperlipidemia", "E78.5", "Hyperlipidemia, unspecified"),
    ("195967001", "Asthma", "J45.909", "Unspecified asthma, uncomplicated"),
    ("271737000", "Anemia", "D64.9", "Anemia, unspecified"),
    ("40055000", "Chronic sinusitis", "J32.9", "Chronic sinusitis, unspecified"),
    ("162864005", "Body mass index 30+ - obesity", "E66.9", "Obesity, unspecified"),
    ("15777000", "Prediabetes", "R73.03", "Prediabetes"),
)

ALLERGIES: tuple[tuple[str, str, str], ...] = (
    ("300916003", "Latex allergy", "environment"),
    ("91936005", "Allergy to penicillin", "medication"),
    ("419474003", "Allergy to mold", "environment"),
    ("232350006", "House dust mite allergy", "environment"),
    ("418689008", "Allergy to grass pollen", "environment"),
    ("91935009", "Allergy to peanuts", "food"),
)

# Procedures the service asks for are radiotherapy ones.
PROCEDURES: tuple[tuple[str, str], ...] = (
    ("1287742003", "Radiotherapy (procedure)"),
    ("33195004", "Teleradiotherapy procedure (procedure)"),
)

# Inactivated vaccines only (CVX): no live-vaccine card from history.
IMMUNIZATIONS: tuple[tuple[str, str], ...] = (
    ("140", "Influenza, seasonal, injectable, preservative free"),
    ("115", "Tdap"),
    ("113", "Td (adult) preservative free"),
    ("133", "Pneumococcal conjugate PCV 13"),
    ("33", "pneumococcal polysaccharide vaccine, 23 valent"),
    ("208", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose"),
    ("187", "zoster vaccine recombinant"),
    ("43", "Hep B, adult"),
)


@dataclass(frozen=True)
class PatientRecord:
    """One patient's chart, grouped by the prefetch key whose query returns it."""

    patient_id: str
    now: datetime
    by_key: Mapping[str, tuple[dict[str, Any], ...]]

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.by_key.values())

    def all_resources(self) -> list[dict[str, Any]]:
        return [r for key in PREFETCH_KEYS for r in self.by_key.get(key, ())]


def allocate(size: int) -> dict[str, int]:
    """How many resources each key gets so the total is exactly ``size`` (>= 1).

    Largest-remainder apportionment of ``size - 1`` over ``_SHARES``; the
    Patient is always there.
    """
    if size < 1:
        raise ValueError("a record has at least the Patient")
    rest = size - 1
    exact = {key: rest * share / sum(_SHARES.values()) for key, share in _SHARES.items()}
    counts = {key: int(value) for key, value in exact.items()}
    short = rest - sum(counts.values())
    for key in sorted(exact, key=lambda k: (-(exact[k] - counts[k]), k))[:short]:
        counts[key] += 1
    return {"patient": 1, **counts}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _codeable(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": text or display}


def _observation(
    rid: str, pid: str, category: str, loinc: str, display: str, when: datetime
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": category}]}],
        "code": _codeable(LOINC, loinc, display),
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": _iso(when),
        "issued": _iso(when + timedelta(hours=2)),
    }


def _labs(count: int, pid: str, now: datetime, rng: random.Random) -> list[dict[str, Any]]:
    """Weekly draws going back in time, newest yesterday morning; a draw is the full panel."""
    out: list[dict[str, Any]] = []
    latest = (now - timedelta(days=1)).replace(hour=8, minute=30, second=0, microsecond=0)
    for i in range(count):
        draw, slot = divmod(i, len(LAB_PANEL))
        loinc, display, unit, typical, spread = LAB_PANEL[slot]
        obs = _observation(f"lab-{i}", pid, "laboratory", loinc, display, latest - timedelta(weeks=draw))
        value = round(max(typical + rng.gauss(0, spread), typical / 3), 2)
        low, high = _LAB_RANGES[loinc]
        obs["valueQuantity"] = _quantity(value, unit)
        obs["referenceRange"] = [{"low": _quantity(low, unit), "high": _quantity(high, unit)}]
        out.append(obs)
    return out


def _vitals(count: int, pid: str, now: datetime, rng: random.Random) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    latest = (now - timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    for i in range(count):
        visit, slot = divmod(i, len(VITALS))
        loinc, display, unit, typical, spread = VITALS[slot]
        obs = _observation(f"vital-{i}", pid, "vital-signs", loinc, display, latest - timedelta(weeks=2 * visit))
        obs["valueQuantity"] = _quantity(round(typical + rng.gauss(0, spread), 1), unit)
        out.append(obs)
    return out


def _reproductive(count: int, pid: str, now: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    latest = (now - timedelta(days=2)).replace(hour=10, minute=0, second=0, microsecond=0)
    for i in range(count):
        when = latest - timedelta(weeks=3 * (i // 2))
        if i % 2 == 0:
            obs = _observation(f"repro-{i}", pid, "social-history", "82810-3", "Pregnancy status", when)
            obs["valueCodeableConcept"] = _codeable(LOINC, "LA26683-5", "Not pregnant")
        else:
            obs = _observation(
                f"repro-{i}", pid, "laboratory", "2106-3",
                "Choriogonadotropin (pregnancy test) [Presence] in Urine", when,
            )
            obs["valueCodeableConcept"] = _codeable(SNOMED, "260385009", "Negative")
        out.append(obs)
    return out


def _medication_requests(count: int, pid: str, now: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(count):
        code, display, sig = MEDICATIONS[i % len(MEDICATIONS)]
        out.append({
            "resourceType": "MedicationRequest",
            "id": f"medreq-{i}",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": _codeable(RXNORM, code, display),
            "subject": {"reference": f"Patient/{pid}"},
            "authoredOn": (now - timedelta(days=30 + 7 * i)).date().isoformat(),
            "requester": {"reference": "Practitioner/pcp-1", "display": "Dr. Primary Care"},
            "dosageInstruction": [{"text": sig}],
        })
    return out


def _medication_statements(count: int, pid: str, now: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(count):
        code, display, sig = MEDICATIONS[(len(MEDICATIONS) - 1 - i) % len(MEDICATIONS)]
        out.append({
            "resourceType": "MedicationStatement",
            "id": f"medstmt-{i}",
            "status": "active",
            "medicationCodeableConcept": _codeable(RXNORM, code, display),
            "subject": {"reference": f"Patient/{pid}"},
            "effectivePeriod": {"start": (now - timedelta(days=200 + 11 * i)).date().isoformat()},
            "dateAsserted": (now - timedelta(days=10)).date().isoformat(),
            "dosage": [{"text": sig}],
        })
    return out


def _conditions(count: int, pid: str, now: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(count):
        snomed, display, icd, icd_display = CONDITIONS[i % len(CONDITIONS)]
        code = _codeable(SNOMED, snomed, display)
        code["coding"].append({"system": ICD10, "code": icd, "display": icd_display})
        out.append({
            "resourceType": "Condition",
            "id": f"cond-{i}",
            "clinicalStatus": _codeable(
                "http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"
            ),
            "verificationStatus": _codeable(
                "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"
            ),
            "category": [_codeable(
                "http://terminology.hl7.org/CodeSystem/condition-category",
                "problem-list-item", "Problem List Item",
            )],
            "code": code,
            "subject": {"reference": f"Patient/{pid}"},
            "onsetDateTime": _iso(now - timedelta(days=365 + 90 * i)),
            "recordedDate": _iso(now - timedelta(days=360 + 90 * i)),
        })
    return out


def _allergies(count: int, pid: str, now: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(count):
        snomed, display, category = ALLERGIES[i % len(ALLERGIES)]
        out.append({
            "resourceType": "AllergyIntolerance",
            "id": f"allergy-{i}",
            "clinicalStatus": _codeable(
                "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"
            ),
            "verificationStatus": _codeable(
                "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed", "Confirmed"
            ),
            "type": "allergy",
            "category": [category],
            "criticality": "low",
            "code": _codeable(SNOMED, snomed, display),
            "patient": {"reference": f"Patient/{pid}"},
            "recordedDate": _iso(now - timedelta(days=700 + 30 * i)),
        })
    return out


def _procedures(count: int, pid: str, now: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(count):
        snomed, display = PROCEDURES[i % len(PROCEDURES)]
        start = now - timedelta(days=900 + 14 * i)
        out.append({
            "resourceType": "Procedure",
            "id": f"proc-{i}",
            "status": "completed",
            "code": _codeable(SNOMED, snomed, display),
            "subject": {"reference": f"Patient/{pid}"},
            "performedPeriod": {"start": _iso(start), "end": _iso(start + timedelta(minutes=30))},
        })
    return out


def _immunizations(count: int, pid: str, now: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(count):
        cvx, display = IMMUNIZATIONS[i % len(IMMUNIZATIONS)]
        out.append({
            "resourceType": "Immunization",
            "id": f"imm-{i}",
            "status": "completed",
            "vaccineCode": _codeable(CVX, cvx, display),
            "patient": {"reference": f"Patient/{pid}"},
            "occurrenceDateTime": _iso(now - timedelta(days=120 + 180 * i)),
            "primarySource": True,
        })
    return out


def generate_record(
    size: int = 200, *, seed: int = 0, patient_id: str = "bench-1", now: datetime | None = None
) -> PatientRecord:
    """A deterministic chart of exactly ``size`` resources for ``patient_id``."""
    now = now or datetime.now(UTC)
    rng = random.Random(seed)
    counts = allocate(size)
    patient = {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.4.3.25", "value": f"MRN{seed:06d}"}],
        "name": [{"use": "official", "family": "Bench", "given": ["Dana"]}],
        "gender": "female",
        "birthDate": "1968-04-12",
    }
    by_key: dict[str, tuple[dict[str, Any], ...]] = {
        "patient": (patient,),
        "medicationRequests": tuple(_medication_requests(counts["medicationRequests"], patient_id, now)),
        "medicationStatements": tuple(_medication_statements(counts["medicationStatements"], patient_id, now)),
        "labs": tuple(_labs(counts["labs"], patient_id, now, rng)),
        "vitals": tuple(_vitals(counts["vitals"], patient_id, now, rng)),
        "reproductive": tuple(_reproductive(counts["reproductive"], patient_id, now)),
        "conditions": tuple(_conditions(counts["conditions"], patient_id, now)),
        "allergies": tuple(_allergies(counts["allergies"], patient_id, now)),
        "procedures": tuple(_procedures(counts["procedures"], patient_id, now)),
        "immunizations": tuple(_immunizations(counts["immunizations"], patient_id, now)),
    }
    return PatientRecord(patient_id=patient_id, now=now, by_key=by_key)


def search_bundle(resources: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> dict[str, Any]:
    """A searchset Bundle as a FHIR server (or an EHR's prefetch) returns it."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {
                "fullUrl": f"{BASE_URL}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def draft_orders(patient_id: str, now: datetime) -> dict[str, Any]:
    """An ixabepilone order at the labelled 40 mg/m2 with its H1/H2 premedication."""
    ixa = {
        "resourceType": "MedicationRequest",
        "id": "draft-ixa-1",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": _codeable(
            RXNORM, "1726276", "ixabepilone 15 MG Injection", "Ixabepilone (IXEMPRA) injection"
        ),
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": now.date().isoformat(),
        "dosageInstruction": [{
            "text": "40 mg/m2 IV over 3 hours, every 3 weeks",
            "route": _codeable(SNOMED, "47625008", "Intravenous route"),
            "timing": {"repeat": {"frequency": 1, "period": 3, "periodUnit": "wk"}},
            "doseAndRate": [{"doseQuantity": _quantity(40, "mg/m2")}],
        }],
    }
    premeds = [
        ("draft-h1", "1049909", "diphenhydramine hydrochloride 25 MG Oral Capsule",
         "50 mg by mouth 1 hour before ixabepilone"),
        ("draft-h2", "310273", "famotidine 20 MG Oral Tablet", "20 mg by mouth 1 hour before ixabepilone"),
    ]
    entries = [{"resource": ixa}] + [
        {
            "resource": {
                "resourceType": "MedicationRequest",
                "id": rid,
                "status": "draft",
                "intent": "order",
                "medicationCodeableConcept": _codeable(RXNORM, code, display),
                "subject": {"reference": f"Patient/{patient_id}"},
                "dosageInstruction": [{"text": sig}],
            }
        }
        for rid, code, display, sig in premeds
    ]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def prefetch_of(record: PatientRecord) -> dict[str, Any]:
    """Every prefetch key filled the way an EHR fills it (the Patient bare, searches as Bundles)."""
    prefetch: dict[str, Any] = {}
    for key in PREFETCH_KEYS:
        resources = record.by_key.get(key, ())
        prefetch[key] = resources[0] if key == "patient" else search_bundle(resources)
    return prefetch


def hook_request(
    record: PatientRecord,
    *,
    prefetch: bool = True,
    fhir_server: str | None = None,
    access_token: str = "bench",
    hook_instance: str | None = None,
) -> dict[str, Any]:
    """An order-sign request body; without prefetch it carries fhirServer and a token instead."""
    body: dict[str, Any] = {
        "hookInstance": hook_instance or str(uuid.UUID(int=random.Random(record.size).getrandbits(128), version=4)),
        "hook": "order-sign",
        "context": {
            "userId": "Practitioner/onc-1",
            "patientId": record.patient_id,
            "encounterId": "enc-bench-1",
            "draftOrders": draft_orders(record.patient_id, record.now),
        },
    }
    if fhir_server:
        body["fhirServer"] = fhir_server
        body["fhirAuthorization"] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "bench",
            "patient": record.patient_id,
        }
    if prefetch:
        body["prefetch"] = prefetch_of(record)
    return body


# Drugs a chart keeps after they stop: mostly nothing to check, a few that interact with
# ixabepilone but stopped long ago (no washout still running), so the rules read and pass them.
_STOPPED_COURSES: tuple[tuple[str, str], ...] = (
    ("308182", "amoxicillin 250 MG Oral Capsule"),
    ("197517", "clarithromycin 500 MG Oral Tablet"),
    ("310965", "ibuprofen 200 MG Oral Tablet"),
    ("312617", "prednisone 5 MG Oral Tablet"),
    ("197454", "cephalexin 500 MG Oral Capsule"),
    ("206765", "ketoconazole 200 MG Oral Tablet"),
    ("198211", "simvastatin 40 MG Oral Tablet"),
    ("309362", "clopidogrel 75 MG Oral Tablet"),
)


def generate_history_heavy(
    size: int = 200, *, seed: int = 1, patient_id: str = "bench-history-1", now: datetime | None = None
) -> PatientRecord:
    """A chart that is mostly past: the issue's "history-heavy" patient.

    Of ``size`` resources, about 60% are old CBC and liver panels (weekly,
    going back years: only the newest of each analyte counts), 20% are
    stopped or completed medication courses, 10% resolved conditions, and the
    rest the usual current items. Everything the checks need is current and
    normal, so the call runs every rule to the end and answers as for the
    standard patient.
    """
    now = now or datetime.now(UTC)
    base = generate_record(size, seed=seed, patient_id=patient_id, now=now)
    rng = random.Random(seed)
    stopped_n = size // 5
    resolved_n = size // 10
    keep = size - stopped_n - resolved_n
    counts = allocate(keep)
    labs = _labs(counts["labs"] + counts["vitals"] // 2, patient_id, now, rng)
    stopped = []
    for i in range(stopped_n):
        code, display = _STOPPED_COURSES[i % len(_STOPPED_COURSES)]
        started = now - timedelta(days=400 + 30 * i)
        stopped.append({
            "resourceType": "MedicationRequest",
            "id": f"stopped-{i}",
            "status": "stopped" if i % 2 else "completed",
            "intent": "order",
            "medicationCodeableConcept": _codeable(RXNORM, code, display),
            "subject": {"reference": f"Patient/{patient_id}"},
            "authoredOn": started.date().isoformat(),
            "dosageInstruction": [{"text": "as directed", "timing": {"repeat": {
                "boundsPeriod": {"start": started.date().isoformat(),
                                 "end": (started + timedelta(days=10)).date().isoformat()}}}}],
        })
    resolved = []
    for i, active in enumerate(_conditions(resolved_n, patient_id, now)):
        condition = dict(active, id=f"resolved-{i}")
        condition["clinicalStatus"] = _codeable(
            "http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved", "Resolved")
        condition["abatementDateTime"] = _iso(now - timedelta(days=200 + 30 * i))
        resolved.append(condition)
    by_key = dict(base.by_key)
    by_key["labs"] = tuple(labs)
    by_key["vitals"] = tuple(_vitals(counts["vitals"] - counts["vitals"] // 2 + 3, patient_id, now, rng))
    by_key["medicationRequests"] = tuple(
        _medication_requests(max(counts["medicationRequests"] // 2, 2), patient_id, now)) + tuple(stopped)
    by_key["conditions"] = tuple(_conditions(max(counts["conditions"], 1), patient_id, now)) + tuple(resolved)
    record = PatientRecord(patient_id=patient_id, now=now, by_key=by_key)
    # Trim or pad the labs so the record has exactly ``size`` resources.
    extra = record.size - size
    if extra > 0:
        by_key["labs"] = by_key["labs"][: len(by_key["labs"]) - extra]
    elif extra < 0:
        by_key["labs"] = tuple(_labs(len(by_key["labs"]) - extra, patient_id, now, rng))
    return PatientRecord(patient_id=patient_id, now=now, by_key=by_key)
