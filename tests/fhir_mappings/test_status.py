"""Statuses: pregnancy (with clearing), breastfeeding, conditions, allergies, radiotherapy, live vaccines."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fhir_mappings.status import (
    allergies,
    condition_evidence,
    current,
    live_vaccines,
    radiotherapy,
    reproductive_observations,
)
from tests.fhir_mappings.fhirdata import NOW, PATIENT, fixture, model, raw

SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"


def condition(system, code, *, clinical="active", verification="confirmed", onset="2025-01-10", cid="c1"):
    data = {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{PATIENT}"},
            "code": {"coding": [{"system": system, "code": code}]}, "onsetDateTime": onset}
    if clinical:
        data["clinicalStatus"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": clinical}]}
    if verification:
        data["verificationStatus"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]}
    return model(data)


def kinds(*conditions):
    return {k for k, found in condition_evidence(conditions).items() if found}


@pytest.mark.parametrize(("system", "code", "kind"), [
    (SNOMED, "77386006", "pregnancy"), (ICD10, "Z33.1", "pregnancy"), (ICD10, "O09.523", "pregnancy"), (ICD10, "O9A.111", "pregnancy"),
    (SNOMED, "169750002", "breastfeeding"),
    (SNOMED, "19943007", "liver_disease"), (ICD10, "K70.30", "liver_disease"), (ICD10, "K77", "liver_disease"),
    (SNOMED, "27503000", "gilbert_syndrome"), (ICD10, "E80.4", "gilbert_syndrome"),
    (SNOMED, "44054006", "diabetes"), (ICD10, "E11.9", "diabetes"), (ICD10, "E08.00", "diabetes"), (ICD10, "E13.9", "diabetes"),
    (SNOMED, "302226006", "neuropathy"), (ICD10, "G62.0", "neuropathy"), (ICD10, "G64", "neuropathy"),
])
def test_condition_codes_by_kind(system, code, kind):
    assert kinds(condition(system, code)) == {kind}


@pytest.mark.parametrize("code", ["K69.9", "K78", "E07.9", "E14", "G59", "G65.0", "Z33.0", "Z38.00", "I10"])
def test_codes_just_outside_the_ranges_match_nothing(code):
    assert kinds(condition(ICD10, code)) == set()


@pytest.mark.parametrize(("clinical", "verification", "counted"), [
    ("active", "confirmed", True), ("recurrence", "confirmed", True), ("relapse", None, True),
    ("resolved", "confirmed", False), ("inactive", "confirmed", False), ("remission", "confirmed", False),
    ("active", "refuted", False), ("active", "entered-in-error", False), (None, "confirmed", False),
])
def test_only_active_not_refuted_conditions(clinical, verification, counted):
    assert bool(kinds(condition(SNOMED, "44054006", clinical=clinical, verification=verification))) is counted


def pregnancy_status(answer, when, oid):
    return model({"resourceType": "Observation", "id": oid, "status": "final",
                  "code": {"coding": [{"system": "http://loinc.org", "code": "82810-3"}]},
                  "subject": {"reference": f"Patient/{PATIENT}"}, "effectiveDateTime": when,
                  "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": answer}]}})


def hcg(when, *, answer=None, value=None, unit="m[IU]/mL", loinc="2106-3", oid="hcg"):
    data = {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
            "subject": {"reference": f"Patient/{PATIENT}"}, "effectiveDateTime": when}
    if answer:
        data["valueCodeableConcept"] = {"coding": [{"system": SNOMED, "code": answer}]}
    if value is not None:
        data["valueQuantity"] = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    return model(data)


def pregnancy(conditions=(), observations=()):
    found, _, verdicts, _ = reproductive_observations(observations, NOW)
    return current(condition_evidence(conditions)["pregnancy"] + found, verdicts)


def test_not_pregnant_status_newer_than_pregnancy_condition_clears_it():
    preg = fixture("condition-pregnancy.json")
    not_pregnant = fixture("observation-not-pregnant.json")
    assert [e.ref for e in pregnancy([preg])] == ["Condition/preg-1"]
    assert pregnancy([preg], [not_pregnant]) == ()


def test_older_not_pregnant_does_not_clear_a_newer_pregnant_status():
    older_negative = pregnancy_status("60001007", "2026-10-01T00:00:00Z", "a")
    newer_positive = pregnancy_status("77386006", "2026-11-20T00:00:00Z", "b")
    assert [e.ref for e in pregnancy([], [older_negative, newer_positive])] == ["Observation/b"]


def test_negative_hcg_newer_clears_older_pregnant_status():
    positive = pregnancy_status("LA15173-0", "2026-11-01T00:00:00Z", "a")
    negative = hcg("2026-11-24T08:00:00Z", answer="260385009")
    assert pregnancy([], [positive, negative]) == ()


@pytest.mark.parametrize(("when", "counted"), [
    ("2026-11-05T15:00:00Z", True),   # 20 days ago, nothing newer: still evidence (issue 12 item 1)
    ("2026-01-25T15:00:00Z", True),   # exactly 304 days before NOW
    ("2026-01-25T14:59:00Z", False),  # just over 304 days: about 10 months [ixabepilone.md, Lab freshness]
    ("2026-11-24T08:00:00Z", True),
])
def test_positive_hcg_stays_evidence_for_about_ten_months(when, counted):
    assert bool(pregnancy([], [hcg(when, answer="10828004")])) is counted


@pytest.mark.parametrize(("value", "positive"), [(24, False), (25, False), (26, True)])
def test_quantitative_hcg_threshold_25_miu_per_ml(value, positive):
    # codes.md: > 25 mIU/mL (threshold marked *verify*).
    assert bool(pregnancy([], [hcg("2026-11-24T08:00:00Z", value=value, loinc="2118-8")])) is positive


def test_undated_active_pregnancy_condition_is_not_cleared():
    preg = model({**raw("condition-pregnancy.json"), "onsetDateTime": None})
    assert len(pregnancy([preg], [fixture("observation-not-pregnant.json")])) == 1


def test_breastfeeding_observation_and_newer_not_breastfeeding():
    def status(answer, when, oid):
        return model({"resourceType": "Observation", "id": oid, "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "63895-7"}]},
                      "subject": {"reference": f"Patient/{PATIENT}"}, "effectiveDateTime": when,
                      "valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": answer}]}})
    feeding = status("LA29252-6", "2026-11-20T00:00:00Z", "a")
    _, found, _, verdicts = reproductive_observations([feeding], NOW)
    assert [e.ref for e in current(found, verdicts)] == ["Observation/a"]
    _, found, _, verdicts = reproductive_observations([feeding, status("LA29253-4", "2026-11-24T00:00:00Z", "b")], NOW)
    assert current(found, verdicts) == ()


def test_cremophor_allergy_by_text():
    (allergy,) = allergies([fixture("allergy-cremophor.json")])
    assert allergy.substances == {"cremophor"} and allergy.criticality == "high"
    assert allergy.ref == "AllergyIntolerance/alg-1" and allergy.display.startswith("Cremophor EL")


def test_paclitaxel_allergy_by_rxnorm_and_reaction_substance():
    data = {**raw("allergy-cremophor.json"), "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                                   "code": "56946", "display": "paclitaxel"}]}}
    assert allergies([model(data)])[0].substances == {"paclitaxel"}
    data = {**raw("allergy-cremophor.json"), "code": {"text": "chemotherapy diluent"}}
    data["reaction"][0]["substance"] = {"text": "Kolliphor EL"}
    assert allergies([model(data)])[0].substances == {"cremophor"}


@pytest.mark.parametrize(("field", "code"), [
    ("verificationStatus", "entered-in-error"), ("verificationStatus", "refuted"), ("clinicalStatus", "inactive"),
    ("clinicalStatus", "resolved"),
])
def test_allergies_not_current_are_skipped(field, code):
    data = raw("allergy-cremophor.json")
    data[field]["coding"][0]["code"] = code
    assert allergies([model(data)]) == []


def test_radiotherapy_with_its_date_and_status():
    (evidence,) = radiotherapy([fixture("procedure-radiotherapy.json")], NOW)
    assert evidence.date == datetime(2026, 10, 26, tzinfo=UTC) and evidence.code == "1287742003"
    assert radiotherapy([model({**raw("procedure-radiotherapy.json"), "status": "not-done"})], NOW) == []
    ongoing = model({**raw("procedure-radiotherapy.json"), "status": "in-progress", "performedPeriod": {"start": "2026-11-20"}})
    assert radiotherapy([ongoing], NOW)[0].date == NOW
    legacy = raw("procedure-radiotherapy.json")
    legacy["code"]["coding"][0]["code"] = "108290001"
    assert len(radiotherapy([model(legacy)], NOW)) == 1


@pytest.mark.parametrize(("cvx", "live"), [("03", True), ("3", True), ("21", True), ("121", True), ("150", False), ("141", False)])
def test_live_vaccines_by_cvx(cvx, live):
    data = raw("immunization-mmr.json")
    data["vaccineCode"]["coding"][0]["code"] = cvx
    assert bool(live_vaccines([model(data)])) is live


def test_live_vaccine_date_and_not_done_skipped():
    (evidence,) = live_vaccines([fixture("immunization-mmr.json")])
    assert evidence.date == datetime(2026, 11, 15, 10, tzinfo=UTC) and evidence.code == "03"
    assert live_vaccines([model({**raw("immunization-mmr.json"), "status": "not-done"})]) == []


# --- live vaccines ordered (MedicationRequest), not only given (Immunization)

CVX = "http://hl7.org/fhir/sid/cvx"


def vaccine_order(code, text, *, status="active", oid="mr-vax"):
    from tests.fhir_mappings.fhirdata import medication_request

    return medication_request({"coding": [{"system": CVX, "code": code}], "text": text}, oid=oid, status=status,
                              authoredOn="2026-09-01")


def build(record, drafts=()):
    from fhir_mappings import build_facts
    from fhir_mappings.resources import parse_resources

    parsed, problems = parse_resources(record, PATIENT, now=NOW, record=True)
    draft_models, _ = parse_resources(drafts, PATIENT)
    assert problems == []
    return build_facts(parsed, draft_models, PATIENT, NOW)


def test_active_order_for_a_live_vaccine_counts_whatever_its_date():
    facts = build([vaccine_order("03", "MMR II")])  # authored 85 days ago, still an active order
    (evidence,) = facts.ordered_live_vaccines
    assert evidence.label == "MMR II (active order)" and evidence.code == "03" and evidence.ref == "MedicationRequest/mr-vax"


def test_draft_order_for_a_live_vaccine_and_cvx_written_one_digit_wide():
    facts = build([], drafts=[vaccine_order("3", "measles, mumps and rubella virus vaccine", status="draft")])
    assert [e.label for e in facts.ordered_live_vaccines] == ["measles, mumps and rubella virus vaccine (draft order)"]


@pytest.mark.parametrize("status", ["completed", "stopped", "cancelled"])
def test_finished_vaccine_orders_do_not_count(status):
    assert build([vaccine_order("03", "MMR II", status=status)]).ordered_live_vaccines == ()


def test_inactivated_vaccine_order_does_not_count():
    assert build([vaccine_order("141", "influenza, seasonal, injectable")]).ordered_live_vaccines == ()


def test_live_vaccine_order_through_a_contained_medication():
    order = vaccine_order("03", "unused")
    del order["medicationCodeableConcept"]
    order["contained"] = [{"resourceType": "Medication", "id": "vax",
                           "code": {"coding": [{"system": CVX, "code": "21"}], "text": "varicella virus vaccine"}}]
    order["medicationReference"] = {"reference": "#vax"}
    assert [e.code for e in build([order]).ordered_live_vaccines] == ["21"]


# -- issue 12: pregnancy as coded in practice, allergy severity -----------------------------------------

from fhir_mappings.status import PREGNANCY_ENDED  # noqa: E402


@pytest.mark.parametrize(("system", "code"), [
    (SNOMED, "72892002"), (SNOMED, "169560008"), (ICD10, "Z34.90"), (ICD10, "Z3A.20"), (ICD10, "Z33.3"),
    (ICD10, "O00.101"), (ICD10, "O26.641"), (ICD10, "O35.0XX0"), (ICD10, "O60.02"), (ICD10, "O99.891"),
])
def test_pregnancy_codes_of_the_ecqm_value_set_and_issue_12(system, code):
    assert kinds(condition(system, code)) == {"pregnancy"}


@pytest.mark.parametrize("code", ["O9A.13", "O9A.12", "O99.03", "O24.435", "O60.14X0", "O80", "Z37.0", "Z39.2",
                                  "O03.9", "Z33.2", "O90.89"])
def test_childbirth_puerperium_and_abortion_codes_end_a_pregnancy_and_are_not_one(code):
    assert kinds(condition(ICD10, code)) == {PREGNANCY_ENDED}


@pytest.mark.parametrize("code", ["O91.03", "O92.13", "Z39.1"])
def test_lactation_codes_mean_breastfeeding(code):
    assert kinds(condition(ICD10, code)) == {"breastfeeding", PREGNANCY_ENDED}


def test_abated_pregnancy_is_not_current_and_ends_at_its_abatement():
    data = {"resourceType": "Condition", "id": "p", "subject": {"reference": f"Patient/{PATIENT}"},
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"coding": [{"system": SNOMED, "code": "72892002", "display": "Normal pregnancy"}]},
            "onsetDateTime": "2026-02-01", "abatementDateTime": "2026-10-30"}
    found = condition_evidence([model(data)], NOW)
    assert found["pregnancy"] == [] and [e.date.isoformat()[:10] for e in found[PREGNANCY_ENDED]] == ["2026-10-30"]


def test_allergy_reaction_severity_and_anaphylaxis_are_read():
    data = {**raw("allergy-cremophor.json"), "criticality": "low", "reaction": [
        {"severity": "moderate", "manifestation": [{"text": "Urticaria"}]},
        {"severity": "severe", "manifestation": [{"coding": [{"system": SNOMED, "code": "39579001", "display": "Anaphylaxis"}]}]}]}
    (found,) = allergies([model(data)])
    assert (found.severity, found.anaphylaxis, found.reactions) == ("severe", True, ("Urticaria", "Anaphylaxis"))
