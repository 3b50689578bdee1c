"""Override analytics and silent mode through the HTTP API (issue 14), as an EHR and a committee use them.

Hook calls and feedback are POSTed as a CDS client sends them; the numbers
are read back from ``GET /analytics.json`` and ``GET /analytics``. Expected
values are counted from what the tests posted, and the thresholds are the
issue's: flag above 90% override over at least 30 answered cards, 30 days
by default, 400 days of retention.
"""
from __future__ import annotations

import base64
import json
import logging
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from cds_services.analytics.store import served_table
from cds_services.config import ConfigError
from cds_services.runtime import EXTENSION
from tests.analytics_support import (
    SELECT,
    SIGN,
    TOKEN,
    accepted,
    auth,
    call,
    card_of,
    overridden,
    request_body,
    send_feedback,
)
from tests.conftest import FIXED_NOW
from tests.signing import bearer, client_claims, generate_ec_key, make_jwks, sign_token


@pytest.fixture
def committee(make_app):
    """A service with the analytics on (CDS_ANALYTICS_TOKEN set)."""
    return make_app({"analytics_token": TOKEN}).test_client()


def report(client, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    response = client.get("/analytics.json" + (f"?{query}" if query else ""), headers=auth())
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_json()


def rule(document, code):
    (entry,) = [r for r in document["rules"] if r["code"] == code]
    return entry


def counts(entry):
    return {k: entry[k] for k in ("fired", "silent", "accepted", "overridden", "no_feedback", "override_rate")}


# ---------------------------------------------------------------- access


@pytest.mark.parametrize("path", ["/analytics", "/analytics.json"])
def test_without_a_token_configured_the_analytics_do_not_exist(client, path):
    response = client.get(path, headers=auth())
    assert response.status_code == 404
    assert response.get_json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("header", [
    None,
    "Bearer wrong-token-0123456789",
    f"Bearer {TOKEN}x",
    f"Token {TOKEN}",
    "Basic " + base64.b64encode(b"pharmacist:not-the-token").decode(),
    "Basic !!!not-base64",
])
@pytest.mark.parametrize("path", ["/analytics", "/analytics.json"])
def test_a_missing_or_wrong_token_is_a_401_with_a_challenge(committee, path, header):
    call(committee, "platelets-low")
    response = committee.get(path, headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    body = response.get_data(as_text=True)
    assert "platelets-low" not in body and '"fired"' not in body
    # One challenge per header (Chromium reads a header as one challenge): Basic, so a browser asks for the token.
    challenges = response.headers.getlist("WWW-Authenticate")
    assert [c.split(" ", 1)[0] for c in challenges] == ["Bearer", "Basic"]


def test_a_browser_can_send_the_token_as_the_basic_password(committee):
    call(committee, "platelets-low")
    basic = "Basic " + base64.b64encode(f"pharmacist:{TOKEN}".encode()).decode()
    response = committee.get("/analytics", headers={"Authorization": basic})
    assert response.status_code == 200 and response.mimetype == "text/html"


# ---------------------------------------------------------------- the numbers


def test_rates_reasons_and_suggestions_count_what_clinicians_did(committee):
    items = []
    platelets = [card_of(call(committee, "platelets-low"), "platelets-low") for _ in range(4)]
    items += [accepted(platelets[0]), overridden(platelets[1], "data-outdated", "Recount this morning: 112,000"),
              overridden(platelets[2], "benefit-outweighs-risk")]  # platelets[3]: no feedback
    interaction = call(committee, "cyp3a4-strong-inhibitor")
    items += [accepted(card_of(interaction, "cyp3a4-strong-inhibitor")),
              overridden(card_of(interaction, "dose-check"), None)]
    send_feedback(committee, items)

    document = report(committee)
    assert counts(rule(document, "platelets-low")) == {
        "fired": 4, "silent": 0, "accepted": 1, "overridden": 2, "no_feedback": 1, "override_rate": pytest.approx(2 / 3, abs=1e-4),
    }
    platelets_rule = rule(document, "platelets-low")
    assert platelets_rule["display"] == "Platelet count below 100,000 cells/mm3"
    assert platelets_rule["reasons"] == [
        {"code": "benefit-outweighs-risk", "system": "urn:ixabepilone-cds:override-reason",
         "display": "Benefit outweighs risk", "count": 1, "with_comment": 0},
        {"code": "data-outdated", "system": "urn:ixabepilone-cds:override-reason",
         "display": "Data shown is outdated or wrong", "count": 1, "with_comment": 1},
    ]
    assert platelets_rule["suggestions_accepted"] == 1 and platelets_rule["indicators"] == {"critical": 4}
    assert platelets_rule["flagged"] is False
    assert counts(rule(document, "cyp3a4-strong-inhibitor")) == {
        "fired": 1, "silent": 0, "accepted": 1, "overridden": 0, "no_feedback": 0, "override_rate": 0.0}
    dose = rule(document, "dose-check")
    assert counts(dose) == {"fired": 1, "silent": 0, "accepted": 0, "overridden": 1, "no_feedback": 0, "override_rate": 1.0}
    assert dose["reasons"] == [{"code": None, "system": None, "display": "No reason given", "count": 1, "with_comment": 0}]
    assert [r["code"] for r in document["rules"]] == ["platelets-low", "cyp3a4-strong-inhibitor", "dose-check"]
    assert {k: document["totals"][k] for k in ("fired", "accepted", "overridden", "no_feedback")} == {
        "fired": 6, "accepted": 2, "overridden": 3, "no_feedback": 1}
    assert {g["indicator"]: g["fired"] for g in document["by_indicator"]} == {"critical": 4, "warning": 2}
    assert document["since_days"] == 30 and document["flagged"] == []


def test_each_service_is_counted_apart(committee):
    call(committee, "platelets-low")
    select_card = card_of(call(committee, "platelets-low-order-select", path=SELECT), "platelets-low")
    send_feedback(committee, [overridden(select_card)], path=SELECT)
    by_service = {g["service_id"]: (g["fired"], g["overridden"]) for g in report(committee)["by_service"]}
    assert by_service == {"ixabepilone-order-select": (1, 1), "ixabepilone-order-sign": (1, 0)}


def test_a_card_counts_once_by_its_latest_feedback(committee):
    """Spec 2.0 §Feedback: a card once ignored (or overridden) can later be acted on; it is still one card."""
    first, second = (card_of(call(committee, "platelets-low"), "platelets-low") for _ in range(2))
    send_feedback(committee, [overridden(first, at="2026-11-25T10:00:00-05:00")])
    send_feedback(committee, [accepted(first, at="2026-11-25T10:05:00-05:00")])
    # Sent twice (a client retry), and the later of two items arriving in the wrong order wins.
    send_feedback(committee, [overridden(second, at="2026-11-25T10:09:00-05:00"),
                              accepted(second, at="2026-11-25T10:01:00-05:00")])
    send_feedback(committee, [overridden(second, at="2026-11-25T10:09:00-05:00")])
    assert counts(rule(report(committee), "platelets-low")) == {
        "fired": 2, "silent": 0, "accepted": 1, "overridden": 1, "no_feedback": 0, "override_rate": 0.5}


def test_feedback_naming_a_suggestion_the_card_never_had_is_counted_apart(committee):
    card = card_of(call(committee, "platelets-low"), "platelets-low")
    item = accepted(card)
    item["acceptedSuggestions"] = [{"id": "3f1f0c0e-9a55-4d4b-8d7e-5c7f6b1a2e90"}]
    send_feedback(committee, [item])
    entry = rule(report(committee), "platelets-low")
    assert (entry["accepted"], entry["suggestions_accepted"], entry["suggestions_unknown"]) == (1, 0, 1)


@pytest.mark.parametrize("answered, overridden_count, flagged", [
    (29, 29, False),  # 100%, but fewer than 30 answered cards
    (30, 27, False),  # exactly 90%: not above
    (30, 28, True),  # 93%, 30 cards
])
def test_alert_fatigue_flag_is_above_90_percent_over_at_least_30_cards(committee, answered, overridden_count, flagged):
    cards = [card_of(call(committee, "premedication-missing"), "premedication-missing") for _ in range(answered)]
    send_feedback(committee, [overridden(c, "patient-monitored") for c in cards[:overridden_count]]
                  + [accepted(c) for c in cards[overridden_count:]])
    document = report(committee)
    entry = rule(document, "premedication-missing")
    assert (entry["overridden"], entry["accepted"], entry["flagged"]) == (overridden_count, answered - overridden_count, flagged)
    assert document["flagged"] == (["premedication-missing"] if flagged else [])
    if flagged:
        assert entry["top_reasons"][0]["code"] == "patient-monitored" and entry["top_reasons"][0]["count"] == 28
    page = committee.get("/analytics", headers=auth()).get_data(as_text=True)
    assert ('class="flag" data-code="premedication-missing"' in page) is flagged


def test_no_answered_card_means_no_rate_not_zero(committee):
    call(committee, "platelets-low")
    entry = rule(report(committee), "platelets-low")
    assert (entry["fired"], entry["no_feedback"], entry["override_rate"], entry["flagged"]) == (1, 1, None, False)


# ---------------------------------------------------------------- time: since, weeks, retention


@pytest.fixture
def app_at(make_app, tmp_path):
    """Apps on one database whose clocks read the given moment, as the service at different times.

    Making the next one writes out the cards the earlier ones queued, as their
    writer threads would within a second.
    """
    made: list[Any] = []

    def _at(moment, **settings):
        for earlier in made:
            earlier.extensions[EXTENSION].analytics.flush()
        made.append(make_app({"analytics_token": TOKEN, **settings}, clock=lambda: moment))
        return made[-1].test_client()

    return _at


def test_since_chooses_the_window_in_days(app_at):
    for age in (timedelta(days=40), timedelta(days=29, hours=23)):
        call(app_at(FIXED_NOW - age), "platelets-low", ago=age)
    now = app_at(FIXED_NOW)
    assert rule(report(now), "platelets-low")["fired"] == 1  # default: 30 days
    assert rule(report(now, since=60), "platelets-low")["fired"] == 2
    assert report(now, since=1)["rules"] == []


@pytest.mark.parametrize("since", ["0", "-3", "abc", "1.5", "401", "٣", "000",
                                   pytest.param("9" * 5000, id="more-digits-than-int-reads")])
def test_a_bad_since_is_a_400_naming_the_parameter(committee, since):
    response = committee.get(f"/analytics.json?since={since}", headers=auth())
    assert response.status_code == 400
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["expression"] == ["since"]
    assert "400" in outcome["issue"][0]["diagnostics"]  # the retention, the largest window there is


def test_override_rate_is_given_per_week(app_at):
    # Wednesday 2026-11-18 (week of Monday 16 Nov) and Wednesday 2026-11-25 (week of 23 Nov).
    earlier = app_at(FIXED_NOW - timedelta(days=7))
    cards = [card_of(call(earlier, "platelets-low", ago=timedelta(days=7)), "platelets-low") for _ in range(2)]
    send_feedback(earlier, [overridden(cards[0]), overridden(cards[1])])
    now = app_at(FIXED_NOW)
    cards = [card_of(call(now, "platelets-low"), "platelets-low") for _ in range(4)]
    send_feedback(now, [overridden(cards[0]), accepted(cards[1]), accepted(cards[2])])
    weeks = {w["start"]: (w["week"], w["fired"], w["overridden"], w["override_rate"]) for w in report(now)["weeks"]}
    assert weeks["2026-11-16"] == ("2026-W47", 2, 2, 1.0)
    assert weeks["2026-11-23"] == ("2026-W48", 4, 1, pytest.approx(1 / 3, abs=1e-4))
    assert weeks["2026-11-09"][1:] == (0, 0, None)  # a week with nothing is there, with no rate
    assert min(weeks) == "2026-10-26"  # the week holding the window's start, 30 days back


def test_records_older_than_the_retention_are_purged(app_at, tmp_path):
    retention = {"analytics_retention_days": 10}
    for age in (timedelta(days=10, seconds=1), timedelta(days=10), timedelta(days=9)):
        call(app_at(FIXED_NOW - age, **retention), "platelets-low", ago=age)
    now = app_at(FIXED_NOW, **retention)
    call(now, "platelets-low")
    rows = served_rows(now)  # written, and then the writer purges
    ages = sorted(FIXED_NOW - row["served_at"].replace(tzinfo=FIXED_NOW.tzinfo) for row in rows)
    assert ages == [timedelta(0), timedelta(days=9), timedelta(days=10)]  # "older than 10 days": 10 d 1 s went


# ---------------------------------------------------------------- silent mode


def test_silent_rules_are_computed_and_counted_but_not_returned(make_app, caplog):
    client = make_app({"analytics_token": TOKEN, "silent_rules": ("premedication-missing", "neuropathy-risk")}).test_client()
    with caplog.at_level(logging.INFO, logger="cds.audit"):
        cards = call(client, "several-findings")
    assert [c["source"]["topic"]["code"] for c in cards] == [
        "neutrophils-low", "platelets-low", "cyp3a4-strong-inhibitor", "dose-check"]
    (audit,) = [r.msg for r in caplog.records if r.name == "cds.audit"]
    assert audit["rule_codes"] == ["neutrophils-low", "platelets-low", "cyp3a4-strong-inhibitor", "dose-check"]
    assert audit["card_count"] == 4
    document = report(client)
    assert counts(rule(document, "premedication-missing")) == {
        "fired": 0, "silent": 1, "accepted": 0, "overridden": 0, "no_feedback": 0, "override_rate": None}
    assert rule(document, "neuropathy-risk")["silent"] == 1
    assert counts(rule(document, "platelets-low"))["fired"] == 1
    assert document["silent_rules"] == ["premedication-missing", "neuropathy-risk"]
    assert (document["totals"]["fired"], document["totals"]["silent"]) == (4, 2)
    page = client.get("/analytics", headers=auth()).get_data(as_text=True)
    assert 'id="silent-mode"' in page and "premedication-missing, neuropathy-risk" in page


def test_star_silences_every_rule(make_app):
    client = make_app({"analytics_token": TOKEN, "silent_rules": ("*",)}).test_client()
    assert call(client, "several-findings") == []
    document = report(client)
    assert document["totals"]["fired"] == 0 and document["totals"]["silent"] == 6


def test_silent_mode_is_logged_at_start(make_app, caplog):
    make_app({"silent_rules": ("dose-check",)})
    assert "SILENT MODE for dose-check" in caplog.text


def test_an_unknown_silent_rule_stops_the_start(make_app):
    with pytest.raises(ConfigError, match=r"CDS_SILENT_RULES: unknown rule code\(s\) platelet-low; known: .*platelets-low"):
        make_app({"silent_rules": ("platelet-low",)})


# ---------------------------------------------------------------- what the log keeps


def served_rows(client):
    cds = client.application.extensions[EXTENSION]
    cds.analytics.flush()
    with cds.feedback.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(served_table).order_by(served_table.c.id))]


def test_the_log_keeps_no_patient_data_and_no_text(committee):
    body = request_body("several-findings")
    cards = committee.post(SIGN, data=json.dumps(body), content_type="application/json").get_json()["cards"]
    rows = served_rows(committee)
    assert [r["card_uuid"] for r in rows] == [c["uuid"] for c in cards]
    assert set(rows[0]) == {"id", "served_at", "service_id", "hook", "rule_code", "indicator", "card_uuid",
                            "suggestion_uuids", "silent", "client_iss", "client_tenant"}
    stored = json.dumps(rows, default=str)
    for private in (body["context"]["patientId"], body["hookInstance"], body["context"]["userId"]):
        assert private not in stored
    for card in cards:
        assert card["summary"] not in stored and card["source"]["label"] not in stored
    assert not re.search(r"Patient/|MedicationRequest/|mg/m2|cells/mm3", stored)
    assert rows[0]["suggestion_uuids"] == [s["uuid"] for s in cards[0]["suggestions"]]
    assert (rows[0]["hook"], rows[0]["service_id"], rows[0]["silent"]) == ("order-sign", "ixabepilone-order-sign", False)


def test_the_calling_clients_issuer_and_tenant_are_kept(make_app, sample_request):
    key = generate_ec_key("ehr-key-1", "ES384")
    iss, tenant = "https://ehr.example.org", "hospital-main"
    client = make_app({"allow_unauthenticated": False, "analytics_token": TOKEN,
                       "trusted_clients": json.dumps([{"iss": iss, "jwks": make_jwks(key), "tenants": [tenant]}])}
                      ).test_client()
    token = sign_token(key, client_claims(iss, "http://localhost" + SIGN, tenant=tenant))
    response = client.post(SIGN, data=json.dumps(sample_request), content_type="application/json",
                           headers={"Authorization": bearer(token)})
    assert response.status_code == 200
    assert [(r["client_iss"], r["client_tenant"]) for r in served_rows(client)] == [(iss, tenant)]
    # The analytics token is not a CDS client's JWT, and a JWT does not open the analytics.
    assert client.get("/analytics.json", headers={"Authorization": bearer(token)}).status_code == 401
    assert client.get("/analytics.json", headers=auth()).status_code == 200


def test_an_error_answer_logs_no_card(committee):
    response = committee.post(SIGN, data="{", content_type="application/json")
    assert response.status_code == 400
    assert served_rows(committee) == []


# ---------------------------------------------------------------- the page


def test_the_page_is_self_contained_html_with_the_same_numbers(committee):
    cards = [card_of(call(committee, "platelets-low"), "platelets-low") for _ in range(3)]
    send_feedback(committee, [overridden(cards[0], "data-outdated", "Recount 112,000"), accepted(cards[1])])
    response = committee.get("/analytics?since=7", headers=auth())
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    page = response.get_data(as_text=True)
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from anywhere
    assert "Last 7 days" in page
    for chart in ("chart-rules", "chart-weeks", "chart-reasons"):
        assert f'<svg class="chart" id="{chart}"' in page
    row = re.search(r'<tr class="" data-code="platelets-low">(.*?)</tr>', page).group(1)
    cells = re.findall(r"<td>([^<]*)</td>", row)
    # Level, Shown, Silent, Accepted, Overridden, No response, Override rate, Flag
    assert cells == ["critical 3", "3", "0", "1", "1", "1", "50%", ""]
    assert "Recount 112,000" not in page  # comments are counted, never shown
    assert "Data shown is outdated or wrong: 1" in page
