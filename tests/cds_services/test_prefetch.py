"""Prefetch first, the EHR's FHIR server for the rest (spec 2.0 §prefetch, requirement 54)."""
from __future__ import annotations

import json
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from tests.support import markdown_text, rule_codes

SIGN = "/cds-services/ixabepilone-order-sign"
FHIR = "https://ehr.example.org/fhir"
TOKEN = "opaque-access-token-7f3a"


def post(client, body):
    return client.post(SIGN, data=json.dumps(body), content_type="application/json")


def with_server(body):
    body["fhirServer"] = FHIR
    body["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
                                 "scope": "patient/*.read", "subject": "ixabepilone-cds",
                                 "patient": body["context"]["patientId"]}
    return body


def searchset(*resources):
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"resource": r} for r in resources]}


@responses.activate(assert_all_requests_are_fired=True)
def test_full_prefetch_reads_nothing_from_the_fhir_server(client, hook_request):
    # No URL is registered: any outbound request would raise ConnectionError.
    response = post(client, with_server(hook_request()))
    assert response.status_code == 200
    assert "platelets-low" in rule_codes(response.get_json())
    assert len(responses.calls) == 0


@responses.activate
def test_absent_key_is_fetched_with_the_bearer_token(client, hook_request, sample_request):
    labs = sample_request["prefetch"]["labs"]
    responses.get(f"{FHIR}/Observation", json=labs)
    body = with_server(hook_request(drop_prefetch=("labs",)))
    response = post(client, body)
    assert response.status_code == 200, response.get_json()
    assert "platelets-low" in rule_codes(response.get_json())
    (call,) = responses.calls
    assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
    query = parse_qs(urlsplit(call.request.url).query)
    assert query["patient"] == ["ixa-demo-1"]
    assert "http://loinc.org|777-3" in query["code"][0].split(",")
    connect, read = call.request.req_kwargs["timeout"]  # type: ignore[attr-defined]  # set by responses
    assert connect > 0 and read > 0


@responses.activate
def test_key_carrying_an_operation_outcome_is_fetched(client, hook_request, sample_request):
    responses.get(f"{FHIR}/Observation", json=sample_request["prefetch"]["labs"])
    outcome = {"resourceType": "OperationOutcome",
               "issue": [{"severity": "error", "code": "timeout", "diagnostics": "prefetch timed out"}]}
    response = post(client, with_server(hook_request(labs=outcome)))
    assert response.status_code == 200
    assert len(responses.calls) == 1
    assert "platelets-low" in rule_codes(response.get_json())


@responses.activate(assert_all_requests_are_fired=True)
def test_null_key_means_no_data_not_missing(client, hook_request):
    response = post(client, with_server(hook_request(labs=None)))
    assert response.status_code == 200
    assert len(responses.calls) == 0
    # With no labs at all, the checks say so rather than staying silent.
    assert "labs-missing" in rule_codes(response.get_json())


@responses.activate
def test_missing_queries_run_concurrently(client, hook_request, sample_request):
    keys = ("patient", "labs", "vitals", "medicationRequests")
    barrier = threading.Barrier(len(keys), timeout=5)
    answers = {
        "/Patient/ixa-demo-1": sample_request["prefetch"]["patient"],
        "/Observation": None,  # decided by the code parameter below
        "/MedicationRequest": searchset(),
    }

    def answer(request):
        barrier.wait()  # raises BrokenBarrierError if the queries ran one after another
        path = urlsplit(request.url).path.removeprefix("/fhir")
        if path == "/Observation":
            codes = parse_qs(urlsplit(request.url).query)["code"][0]
            payload = sample_request["prefetch"]["labs" if "777-3" in codes else "vitals"]
        else:
            payload = answers[path]
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(payload)

    for path in ("/Patient/ixa-demo-1", "/Observation", "/MedicationRequest"):
        responses.add_callback(responses.GET, f"{FHIR}{path}", callback=answer)
    response = post(client, with_server(hook_request(drop_prefetch=keys)))
    assert response.status_code == 200, response.get_json()
    assert len(responses.calls) == len(keys)
    assert "platelets-low" in rule_codes(response.get_json())


ALL_KEYS = ("patient", "medicationRequests", "medicationStatements", "labs", "vitals", "reproductive",
            "conditions", "allergies", "procedures", "immunizations")


def unavailable_text(answer):
    return markdown_text(" ".join(c["summary"] + " " + c["detail"] for c in answer["cards"]
                                  if c["source"]["topic"]["code"] == "check-unavailable"))


def test_no_key_at_all_and_no_fhir_server_is_412_naming_every_key(client, hook_request):
    """Spec 2.0 requirement 54: the service cannot obtain the data it needs."""
    response = post(client, hook_request(drop_prefetch=ALL_KEYS))
    assert response.status_code == 412
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    diagnostics = body["issue"][0]["diagnostics"]
    assert all(f"{key}: not prefetched, and the request has no fhirServer" in diagnostics for key in ALL_KEYS)
    assert sorted(body["issue"][0]["expression"]) == sorted(f"prefetch.{key}" for key in ALL_KEYS)


def test_some_keys_missing_and_no_fhir_server_gives_every_card_the_rest_allows(client, hook_request):
    """Partial data never hides a card: the platelet count was sent, so its card is there."""
    response = post(client, hook_request(drop_prefetch=("conditions", "medicationStatements")))
    assert response.status_code == 200
    answer = response.get_json()
    assert rule_codes(answer)[0] == "platelets-low"
    text = unavailable_text(answer)
    assert "prefetch.conditions could not be had (not prefetched, and the request has no fhirServer" in text
    assert "prefetch.medicationStatements could not be had" in text
    assert "Pregnancy" in text and "Strong CYP3A4 inhibitor" in text  # the checks each one weakens


def test_a_key_holding_an_operation_outcome_without_a_server_gives_the_other_cards(client, hook_request):
    """The EHR could not fill prefetch.medicationStatements and sent no fhirServer: 200, the platelet
    card (80,000/mm3 [L §4]) and the key named with the EHR's own words."""
    outcome = {"resourceType": "OperationOutcome",
               "issue": [{"severity": "error", "code": "not-supported",
                          "diagnostics": "Resource type MedicationStatement is not supported"}]}
    response = post(client, hook_request(medicationStatements=outcome))
    assert response.status_code == 200
    answer = response.get_json()
    assert [c["indicator"] for c in answer["cards"] if c["source"]["topic"]["code"] == "platelets-low"] == ["critical"]
    text = unavailable_text(answer)
    assert ("prefetch.medicationStatements could not be had (the EHR sent an OperationOutcome instead "
            "(Resource type MedicationStatement is not supported), and the request has no fhirServer") in text
    assert "Strong CYP3A4 inhibitor" in text


def test_missing_labs_are_not_reported_as_labs_not_on_record(client, hook_request):
    answer = post(client, hook_request(drop_prefetch=("labs",))).get_json()
    assert "labs-missing" not in rule_codes(answer)  # unknown is not "none on record"
    assert "prefetch.labs could not be had" in unavailable_text(answer)


@pytest.mark.parametrize(("status", "words"), [
    (400, "unexpected status 400"), (403, "refused access (403)"), (404, "not found on the FHIR server (404)"),
    (401, "refused access (401)"), (500, "FHIR server error (500)"),
])
@responses.activate
def test_a_server_that_does_not_support_a_resource_type_does_not_hide_the_platelet_card(
        client, hook_request, caplog, status, words):
    responses.get(f"{FHIR}/MedicationStatement", status=status,
                  json={"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-supported"}]})
    response = post(client, with_server(hook_request(drop_prefetch=("medicationStatements",))))
    assert response.status_code == 200
    answer = response.get_json()
    assert [c["indicator"] for c in answer["cards"] if c["source"]["topic"]["code"] == "platelets-low"] == ["critical"]
    text = unavailable_text(answer)
    assert "prefetch.medicationStatements could not be had" in text and words in text
    assert TOKEN not in caplog.text and TOKEN not in response.get_data(as_text=True)


@responses.activate
def test_fhir_server_timeout_is_reported_on_the_card(client, hook_request):
    responses.get(f"{FHIR}/Observation", body=requests.ReadTimeout("slow"))
    answer = post(client, with_server(hook_request(drop_prefetch=("labs",)))).get_json()
    assert "did not answer in time" in unavailable_text(answer)


@responses.activate
def test_redirects_are_not_followed(client, hook_request):
    responses.get(f"{FHIR}/Observation", status=302, headers={"Location": "https://evil.example/steal"})
    response = post(client, with_server(hook_request(drop_prefetch=("labs",))))
    assert response.status_code == 200
    assert len(responses.calls) == 1
    assert "redirect" in unavailable_text(response.get_json())


@responses.activate
def test_oversized_fhir_response_is_refused(make_app, hook_request):
    client = make_app({"fhir_max_response_bytes": 1000}).test_client()
    responses.get(f"{FHIR}/Observation", body="x" * 5000)
    response = post(client, with_server(hook_request(drop_prefetch=("labs",))))
    assert "larger than 1000 bytes" in unavailable_text(response.get_json())


@pytest.mark.parametrize(("bad", "words"), [("not json at all", "invalid JSON"),
                                            ('{"resourceType": 5}', "not a FHIR resource")])
@responses.activate
def test_unusable_fhir_answer_is_reported(client, hook_request, bad, words):
    responses.get(f"{FHIR}/Observation", body=bad)
    response = post(client, with_server(hook_request(drop_prefetch=("labs",))))
    assert response.status_code == 200 and words in unavailable_text(response.get_json())


@responses.activate
def test_every_key_failing_on_the_fhir_server_is_412(client, hook_request):
    responses.get(f"{FHIR}/Patient/ixa-demo-1", status=401)
    for path in ("MedicationRequest", "MedicationStatement", "Observation", "Condition", "AllergyIntolerance",
                 "Procedure", "Immunization"):
        responses.get(f"{FHIR}/{path}", status=401)
    response = post(client, with_server(hook_request(drop_prefetch=ALL_KEYS)))
    assert response.status_code == 412
    assert "refused access (401)" in response.get_json()["issue"][0]["diagnostics"]


@responses.activate(assert_all_requests_are_fired=True)
@pytest.mark.parametrize("server", [
    "https://evil.example/fhir",                 # not on the allowlist
    "http://ehr.example.org/fhir",               # plain http without the development flag
    "https://ehr.example.org/fhirx",             # prefix that is not a path segment
    "http://169.254.169.254/latest/meta-data",   # cloud metadata
])
def test_fhir_server_off_the_allowlist_is_never_contacted(client, hook_request, server):
    body = with_server(hook_request(drop_prefetch=("labs",)))
    body["fhirServer"] = server
    response = post(client, body)
    assert response.status_code == 200
    assert "not a FHIR server this service is configured to call" in unavailable_text(response.get_json())
    assert len(responses.calls) == 0


# --- a Bundle that says it is incomplete ---------------------------------------------

def test_bundle_whose_total_exceeds_its_entries_without_a_next_link_is_reported(client, hook_request, sample_request):
    labs = dict(sample_request["prefetch"]["labs"])
    labs["total"] = len(labs["entry"]) + 40
    answer = post(client, hook_request(labs=labs)).get_json()
    assert rule_codes(answer)[0] == "platelets-low"
    assert f"prefetch.labs says {len(labs['entry']) + 40} resources matched but holds {len(labs['entry'])}" in \
        unavailable_text(answer)


def test_included_entries_do_not_count_against_the_total(client, hook_request):
    med = {"resourceType": "Medication", "id": "m1", "code": {"text": "famotidine"}}
    bundle = searchset(medication_request("mr-f", "4278", "famotidine"))
    bundle["entry"].append({"resource": med, "search": {"mode": "include"}})
    answer = post(client, hook_request(medicationRequests=bundle)).get_json()
    assert "resources matched but holds" not in unavailable_text(answer)


# --- Medications referenced by id are read with one search, not _include ---------------

def test_no_prefetch_template_uses_include(client):
    """Spec 2.0 §prefetch-query-restrictions recommends a subset without _include."""
    for service in client.get("/cds-services").get_json()["services"]:
        assert not any("_include" in template for template in service["prefetch"].values())


def ordered_by_reference(mid, med_id):
    return {"resourceType": "MedicationRequest", "id": mid, "status": "active", "intent": "order",
            "medicationReference": {"reference": f"Medication/{med_id}"},
            "subject": {"reference": "Patient/ixa-demo-1"}, "authoredOn": "2026-11-01"}


KETOCONAZOLE = {"resourceType": "Medication", "id": "med-keto", "code": {"coding": [
    {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6135", "display": "ketoconazole"}]}}


@responses.activate(assert_all_requests_are_fired=True)
def test_referenced_medication_is_read_with_one_batched_search(client, hook_request):
    responses.get(f"{FHIR}/Medication", json=searchset(KETOCONAZOLE), match=[
        responses.matchers.query_param_matcher({"_id": "med-keto,med-other", "_count": "2"})])
    meds = searchset(ordered_by_reference("mr-1", "med-keto"), ordered_by_reference("mr-2", "med-other"))
    answer = post(client, with_server(hook_request(medicationRequests=meds))).get_json()
    assert "cyp3a4-strong-inhibitor" in rule_codes(answer)
    assert len(responses.calls) == 1
    # med-other was not found: its order is named as not checked, never silently passed
    assert "MedicationRequest/mr-2: its medication Medication/med-other was not found" in unavailable_text(answer)


@responses.activate(assert_all_requests_are_fired=True)
def test_referenced_medication_already_sent_is_not_read_again(client, hook_request):
    meds = searchset(ordered_by_reference("mr-1", "med-keto"), KETOCONAZOLE)
    answer = post(client, with_server(hook_request(medicationRequests=meds))).get_json()
    assert "cyp3a4-strong-inhibitor" in rule_codes(answer) and len(responses.calls) == 0


# --- paging: a search Bundle with a next link is only the first page -------------------

def medication_request(mid, rxcui, name):
    return {"resourceType": "MedicationRequest", "id": mid, "status": "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                      "code": rxcui, "display": name}], "text": name},
            "subject": {"reference": "Patient/ixa-demo-1"}, "authoredOn": "2026-11-01"}


# Page 1: an H1 and an H2 antagonist (nothing to warn about); page 2: clarithromycin 500 MG (strong CYP3A4 inhibitor).
PAGE_1_MEDS = (medication_request("mr-diphen", "3498", "diphenhydramine"),
               medication_request("mr-famo", "4278", "famotidine"))
PAGE_2_MEDS = (medication_request("mr-clari", "21212", "clarithromycin"),)
NEXT = f"{FHIR}?_getpages=7d1c&_getpagesoffset=2&_count=2&_bundletype=searchset"


def page(resources, next_url=None):
    bundle = searchset(*resources)
    bundle["link"] = [{"relation": "self", "url": f"{FHIR}/MedicationRequest?patient=ixa-demo-1"}]
    if next_url:
        bundle["link"].append({"relation": "next", "url": next_url})
    return bundle


def page_2_route(json_body=None, status=200):
    return responses.get(FHIR, json=json_body, status=status, match=[responses.matchers.query_param_matcher(
        {"_getpages": "7d1c", "_getpagesoffset": "2", "_count": "2", "_bundletype": "searchset"})])


def unavailable_details(answer):
    return markdown_text(" ".join(c["detail"] for c in answer["cards"]
                                  if c["source"]["topic"]["code"] == "check-unavailable"))


@responses.activate(assert_all_requests_are_fired=True)
def test_later_page_of_a_fetched_key_is_read_and_checked(client, hook_request):
    responses.get(f"{FHIR}/MedicationRequest", json=page(PAGE_1_MEDS, NEXT),
                  match=[responses.matchers.query_param_matcher({"patient": "ixa-demo-1"}, strict_match=False)])
    page_2_route(page(PAGE_2_MEDS))
    answer = post(client, with_server(hook_request(drop_prefetch=("medicationRequests",)))).get_json()
    assert "cyp3a4-strong-inhibitor" in rule_codes(answer)
    assert "premedication-missing" not in rule_codes(answer)  # page 1 still counts
    assert "check-unavailable" not in rule_codes(answer)
    assert [c.request.headers["Authorization"] for c in responses.calls] == [f"Bearer {TOKEN}"] * 2


@responses.activate(assert_all_requests_are_fired=True)
def test_prefetched_first_page_is_completed_from_the_fhir_server(client, hook_request):
    page_2_route(page(PAGE_2_MEDS))
    answer = post(client, with_server(hook_request(medicationRequests=page(PAGE_1_MEDS, NEXT)))).get_json()
    assert "cyp3a4-strong-inhibitor" in rule_codes(answer)


@responses.activate
def test_first_page_without_a_fhir_server_is_reported_not_silent(client, hook_request):
    response = post(client, hook_request(medicationRequests=page(PAGE_1_MEDS, NEXT)))
    assert response.status_code == 200 and len(responses.calls) == 0
    details = unavailable_details(response.get_json())
    assert "prefetch.medicationRequests is only the first page" in details and "not checked" in details


@responses.activate
def test_next_link_to_another_host_is_never_followed(client, hook_request):
    evil = "https://attacker.example/fhir?_getpages=7d1c"
    response = post(client, with_server(hook_request(medicationRequests=page(PAGE_1_MEDS, evil))))
    assert response.status_code == 200 and len(responses.calls) == 0
    assert "the next page is not on fhirServer and was not read" in unavailable_details(response.get_json())


@responses.activate
def test_unreadable_later_page_is_reported(client, hook_request):
    page_2_route(status=500)
    response = post(client, with_server(hook_request(medicationRequests=page(PAGE_1_MEDS, NEXT))))
    assert response.status_code == 200
    assert "page 2 of the results could not be read (FHIR server error (500))" in unavailable_details(response.get_json())


@responses.activate
def test_endless_paging_stops_at_the_page_limit_and_says_so(client, hook_request):
    page_2_route(page(PAGE_2_MEDS, NEXT))  # every page links to another
    response = post(client, with_server(hook_request(medicationRequests=page(PAGE_1_MEDS, NEXT))))
    assert len(responses.calls) == 9  # README: up to 10 pages per key; page 1 came in the prefetch
    assert "more than 10 pages" in unavailable_details(response.get_json())
    assert "cyp3a4-strong-inhibitor" in rule_codes(response.get_json())  # what was read is still checked


@pytest.mark.parametrize(("url", "relative"), [
    (f"{FHIR}/MedicationRequest?patient=p1&_page=2", "MedicationRequest?patient=p1&_page=2"),
    (f"{FHIR}?_getpages=7d1c&_getpagesoffset=2", "?_getpages=7d1c&_getpagesoffset=2"),
    ("https://ehr.example.org/fhirevil/MedicationRequest?page=2", None),  # a prefix, not the base
    ("https://ehr.example.org/fhir@attacker.example/x", None),
    ("https://attacker.example/fhir/MedicationRequest", None),
    (f"{FHIR}/../admin/export", None),
    (f"{FHIR}/./MedicationRequest", None),
    (f"{FHIR}/MedicationRequest?page=2\r\nX-Injected: 1", None),
    ("http://ehr.example.org/fhir/MedicationRequest", None),  # https base, http link
    (FHIR, None),
])
def test_next_links_are_followed_only_under_the_fhir_server_base(url, relative):
    from cds_services.prefetch import _relative

    assert _relative(FHIR, url) == relative


# --- a draft that names its drug only by a Medication on the EHR's server ----------------

IXEMPRA = {"resourceType": "Medication", "id": "med-ixempra", "code": {"coding": [
    {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1726276",
     "display": "ixabepilone 15 MG Injection"}]}}


def draft_by_reference(body, med_id):
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft.pop("medicationCodeableConcept")
    draft["medicationReference"] = {"reference": f"Medication/{med_id}"}
    return body


@responses.activate(assert_all_requests_are_fired=True)
def test_a_draft_referencing_a_medication_on_the_server_is_read_with_one_search_and_checked(client, hook_request):
    """The sample's platelets are 80,000/mm3 [L §4]: the card needs the draft to be known as ixabepilone."""
    responses.get(f"{FHIR}/Medication", json=searchset(IXEMPRA), match=[
        responses.matchers.query_param_matcher({"_id": "med-ixempra", "_count": "1"})])
    answer = post(client, with_server(draft_by_reference(hook_request(), "med-ixempra"))).get_json()
    assert [c["indicator"] for c in answer["cards"] if c["source"]["topic"]["code"] == "platelets-low"] == ["critical"]
    assert len(responses.calls) == 1


@responses.activate(assert_all_requests_are_fired=True)
def test_a_draft_whose_medication_is_in_the_bundle_reads_nothing(client, hook_request):
    body = draft_by_reference(hook_request(), "med-ixempra")
    body["context"]["draftOrders"]["entry"].append({"resource": IXEMPRA})
    answer = post(client, with_server(body)).get_json()
    assert "platelets-low" in rule_codes(answer) and len(responses.calls) == 0
