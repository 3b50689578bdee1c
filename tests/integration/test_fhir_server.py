"""Our FHIR searches against a real FHIR R4 server.

The service fills missing prefetch by running these searches on the EHR's
server. A mocked server only echoes what we wrote; this proves the query forms
(comma OR lists, ``system|code`` tokens, ``_sort=-date``, ``_count``,
``clinical-status``, ``status``) select the right resources: the current ones,
and not the resolved or unrelated ones beside them (stopped and completed
medications are asked for on purpose since issue 12).
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.integration

PID = "{{context.patientId}}"


def _codes(*codes: str) -> str:
    return ",".join(f"http://loinc.org|{code}" for code in codes)


LAB_CODES = _codes(
    "751-8", "26499-4", "753-4",  # ANC
    "6690-2", "26464-8", "804-5",  # WBC
    "777-3", "26515-7", "778-1",  # platelets
    "1920-8", "30239-8",  # AST
    "1742-6", "1743-4", "1744-2", "76625-3",  # ALT
    "1975-2", "42719-5", "14631-6",  # total bilirubin
)
VITAL_CODES = _codes("8302-2", "29463-7", "8310-5")
REPRODUCTIVE_CODES = _codes(
    "2106-3", "2118-8", "2112-1", "2110-5", "80384-1", "80385-8", "83086-9", "19080-1", "21198-7",  # hCG
    "82810-3",  # pregnancy status
    "63895-7",  # breastfeeding status
)

# The queries of the brief for issue 5, as the service sends them.
QUERIES = {
    "patient": f"Patient/{PID}",
    # completed and stopped too since issue 12: recent stops and a recent ixabepilone cycle matter
    "medicationRequests": f"MedicationRequest?patient={PID}&status=active,on-hold,completed,stopped",
    "medicationStatements": f"MedicationStatement?patient={PID}&status=active,intended,completed,stopped",
    "labs": f"Observation?patient={PID}&code={LAB_CODES}&_sort=-date&_count=100",
    "vitals": f"Observation?patient={PID}&code={VITAL_CODES}&_sort=-date&_count=50",
    "reproductive": f"Observation?patient={PID}&code={REPRODUCTIVE_CODES}&_sort=-date&_count=20",
    "conditions": f"Condition?patient={PID}&clinical-status=active,recurrence,relapse",
    "allergies": f"AllergyIntolerance?patient={PID}",
    "procedures": f"Procedure?patient={PID}",
    "immunizations": f"Immunization?patient={PID}",
}

# What each query must return for ixa-clean (ids without the "ixa-clean-" prefix).
# Left out on purpose: a resolved pregnancy, a glucose result, the labs in the
# vitals query and the reverse. The stopped ketoconazole order and the completed
# rifampin statement are returned (the rules date them: issue 12).
CLEAN_EXPECTED = {
    "medicationRequests": {"h1", "h2", "old-ketoconazole"},
    "medicationStatements": {"acetaminophen", "old-rifampin"},
    "labs": {"anc", "wbc", "plt", "ast", "alt", "bili"},
    "vitals": {"height", "weight", "temp"},
    "reproductive": {"hcg"},
    "conditions": {"bc"},
    "allergies": {"peanut"},
    "procedures": {"old-radiotherapy"},
    "immunizations": {"flu"},
}


@pytest.fixture(scope="module")
def session(fhir_server) -> Iterator[requests.Session]:
    s = requests.Session()
    s.headers.update({"Authorization": f"Bearer {fhir_server.token}", "Accept": "application/fhir+json"})
    yield s
    s.close()


def get(session: requests.Session, base: str, query: str, patient_id: str, **headers: str) -> dict[str, Any]:
    response = session.get(f"{base}/{query.replace(PID, patient_id)}", headers=headers, timeout=10)
    assert response.status_code == 200, response.text[:500]
    return response.json()


def matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]


def outcomes(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """Warnings the server puts in the Bundle (e.g. an ignored parameter)."""
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "outcome"]


def short_ids(resources: list[dict[str, Any]], patient_id: str) -> set[str]:
    return {r["id"].removeprefix(f"{patient_id}-") for r in resources}


def effective(resource: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(resource["effectiveDateTime"])


def test_metadata_is_open_and_says_r4(fhir_server):
    response = requests.get(f"{fhir_server.base_url}/metadata", timeout=10)
    assert response.status_code == 200
    assert response.json()["fhirVersion"].startswith("4.0")


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token"])
def test_searches_need_the_token(fhir_server, fhir_patients, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = requests.get(f"{fhir_server.base_url}/Patient/ixa-clean", headers=headers, timeout=10)
    assert response.status_code == 401


def test_every_patient_was_loaded(fhir_patients):
    assert len(fhir_patients.ids) == len(set(fhir_patients.ids)) >= 27
    assert "ixa-clean" in fhir_patients.ids


def test_patient_read(fhir_server, fhir_patients, session):
    patient = get(session, fhir_server.base_url, QUERIES["patient"], "ixa-clean")
    assert (patient["resourceType"], patient["id"], patient["gender"]) == ("Patient", "ixa-clean", "female")


@pytest.mark.parametrize("key", sorted(CLEAN_EXPECTED))
def test_query_returns_exactly_the_current_resources(fhir_server, fhir_patients, session, key):
    bundle = get(session, fhir_server.base_url, QUERIES[key], "ixa-clean", Prefer="handling=strict")
    found = matches(bundle)
    assert short_ids(found, "ixa-clean") == CLEAN_EXPECTED[key]
    assert bundle["total"] == len(found)
    assert outcomes(bundle) == []
    for resource in found:  # the patient filter holds: nothing of the other 26 patients
        owner = resource.get("subject") or resource.get("patient")
        assert owner == {"reference": "Patient/ixa-clean"}


def test_vitals_come_newest_first(fhir_server, fhir_patients, session):
    found = matches(get(session, fhir_server.base_url, QUERIES["vitals"], "ixa-clean"))
    dates = [effective(r) for r in found]
    assert dates == sorted(dates, reverse=True)
    assert found[-1]["id"] == "ixa-clean-height"  # 60 days old, the others 1 day


def test_rendered_dates_are_relative_to_load_time(fhir_server, fhir_patients, session):
    found = matches(get(session, fhir_server.base_url, QUERIES["labs"], "ixa-clean"))
    for resource in found:
        assert effective(resource) == fhir_patients.now - timedelta(days=1)


def test_long_history_latest_platelets_first(fhir_server, fhir_patients, session):
    bundle = get(session, fhir_server.base_url, QUERIES["labs"], "ixa-long-history")
    found = matches(bundle)
    assert bundle["total"] == len(found) == 55  # 50 platelets + ANC, WBC, AST, ALT, bilirubin: one page
    platelets = [r for r in found if r["code"]["coding"][0]["code"] == "777-3"]
    assert len(platelets) == 50
    assert platelets[0]["id"] == "ixa-long-history-plt-01"
    assert platelets[0]["valueQuantity"]["value"] == 85
    dates = [effective(r) for r in found]
    assert dates == sorted(dates, reverse=True)


def test_count_limits_the_page_and_offers_next(fhir_server, fhir_patients, session):
    query = QUERIES["labs"].replace("_count=100", "_count=20")
    bundle = get(session, fhir_server.base_url, query, "ixa-long-history")
    assert len(matches(bundle)) == 20 and bundle["total"] == 55
    assert "ixa-long-history-plt-01" in {r["id"] for r in matches(bundle)}  # the newest results come first
    assert any(link["relation"] == "next" for link in bundle["link"])


@pytest.mark.parametrize(
    ("patient_id", "key", "expected"),
    [
        ("ixa-mixed-units", "labs", {"anc", "wbc", "plt", "ast", "alt", "bili"}),  # bilirubin as 14631-6 umol/L
        ("ixa-wbc-only-low", "labs", {"wbc", "plt", "ast", "alt", "bili"}),
        ("ixa-labs-missing", "labs", set()),
        ("ixa-breastfeeding", "reproductive", {"bf-status"}),
        ("ixa-pregnant", "conditions", {"bc", "pregnancy"}),
        ("ixa-erythromycin", "medicationStatements", {"erythromycin"}),
        ("ixa-ketoconazole", "medicationRequests", {"h1", "h2", "ketoconazole"}),
        ("ixa-cremophor-allergy", "allergies", {"cremophor"}),
        ("ixa-radiotherapy-30d", "procedures", {"radiotherapy"}),
        ("ixa-live-vaccine", "immunizations", {"mmr"}),
        ("ixa-several-findings", "medicationRequests", {"ketoconazole"}),
        ("ixa-stopped-ketoconazole", "medicationRequests", {"h1", "h2", "ketoconazole"}),  # completed: returned
    ],
)
def test_story_resources_are_found(fhir_server, fhir_patients, session, patient_id, key, expected):
    found = matches(get(session, fhir_server.base_url, QUERIES[key], patient_id))
    assert short_ids(found, patient_id) == expected


@pytest.mark.parametrize(
    ("query", "patient_id", "expected"),
    [
        # The forms cds_services/catalog.py writes today for these two keys.
        (
            f"Procedure?patient={PID}&code=http://snomed.info/sct|1287742003,http://snomed.info/sct|108290001",
            "ixa-radiotherapy-30d",
            ["radiotherapy"],
        ),
        (f"Procedure?patient={PID}&code=http://snomed.info/sct|108290001", "ixa-radiotherapy-30d", []),
        (f"Immunization?patient={PID}&_sort=-date&_count=50", "ixa-live-vaccine", ["mmr"]),
        (f"Condition?patient=Patient/{PID}&code=http://snomed.info/sct|44054006", "ixa-diabetes", ["t2dm"]),
        (f"Observation?subject=Patient/{PID}&code=http://loinc.org|777-3&_count=1&_sort=-date", "ixa-long-history",
         ["plt-01"]),
    ],
)
def test_query_variants(fhir_server, fhir_patients, session, query, patient_id, expected):
    bundle = get(session, fhir_server.base_url, query, patient_id, Prefer="handling=strict")
    assert [r["id"].removeprefix(f"{patient_id}-") for r in matches(bundle)] == expected


def test_medication_reference_resolves(fhir_server, fhir_patients, session):
    """The server returns medicationReference as stored; the Medication is one read (or _include) away."""
    base, pid = fhir_server.base_url, "ixa-medication-reference"
    requests_found = matches(get(session, base, QUERIES["medicationRequests"], pid))
    (rx,) = [r for r in requests_found if "medicationReference" in r]
    assert rx["medicationReference"] == {"reference": f"Medication/{pid}-clarithromycin"}
    medication = get(session, base, rx["medicationReference"]["reference"], pid)
    assert medication["code"]["coding"][0]["code"] == "21212"  # RxNorm clarithromycin
    included = get(session, base, QUERIES["medicationRequests"] + "&_include=MedicationRequest:medication", pid)
    assert [e["resource"]["id"] for e in included["entry"] if e["search"]["mode"] == "include"] == [
        f"{pid}-clarithromycin"
    ]


def test_unknown_parameter_is_ignored_with_a_warning_unless_strict(fhir_server, fhir_patients, session):
    """Documents the server: lenient by default (an OperationOutcome entry), 400 under Prefer: handling=strict."""
    query = QUERIES["allergies"] + "&not-a-param=1"
    bundle = get(session, fhir_server.base_url, query, "ixa-clean")
    assert short_ids(matches(bundle), "ixa-clean") == {"peanut"}
    assert "not-a-param" in outcomes(bundle)[0]["issue"][0]["diagnostics"]
    strict = session.get(
        f"{fhir_server.base_url}/{query.replace(PID, 'ixa-clean')}", headers={"Prefer": "handling=strict"}, timeout=10
    )
    assert strict.status_code == 400


def test_loading_twice_does_not_duplicate(fhir_server, fhir_patients, fhir_tools, session):
    before = get(session, fhir_server.base_url, QUERIES["labs"], "ixa-long-history")["total"]
    fhir_tools.load_patients(fhir_server, now=fhir_patients.now)
    assert get(session, fhir_server.base_url, QUERIES["labs"], "ixa-long-history")["total"] == before == 55


def test_service_prefetch_templates_run_strictly(fhir_server, fhir_patients, session, in_ci):
    """The service's own templates (cds_services.catalog), not a copy: every parameter is understood."""
    try:
        from cds_services.catalog import prefetch_templates
    except ModuleNotFoundError as exc:  # the mapping layer is still being written
        if exc.name and exc.name.startswith("fhir_mappings") and not in_ci:
            pytest.skip(f"cds_services.catalog cannot be imported yet: {exc}")
        raise
    for key, template in prefetch_templates().items():
        body = get(session, fhir_server.base_url, template, "ixa-clean", Prefer="handling=strict")
        if key == "patient":
            assert body["id"] == "ixa-clean"
        else:
            assert outcomes(body) == [], key
            assert all(
                (r.get("subject") or r.get("patient")) == {"reference": "Patient/ixa-clean"} for r in matches(body)
            ), key
