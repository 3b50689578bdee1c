"""Feedback (spec 2.0 §feedback): validated, stored, and still there after a restart."""
from __future__ import annotations

import json

import pytest

from cds_services.runtime import EXTENSION

URL = "/cds-services/ixabepilone-order-sign/feedback"

ACCEPTED = {
    "card": "9368d37b-283f-44a0-93ea-547cebab93ec",
    "outcome": "accepted",
    "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
    "outcomeTimestamp": "2026-11-25T14:58:12Z",
}
OVERRIDDEN = {
    "card": "7e1bb0c5-3c9b-4d4d-9b7a-5d0e2f1c6a11",
    "outcome": "overridden",
    "overrideReason": {
        "reason": {"system": "urn:ixabepilone-cds:override-reason", "code": "benefit-outweighs-risk",
                   "display": "Benefit outweighs risk"},
        "userComment": "Platelets rechecked this morning: 112,000",
    },
    "outcomeTimestamp": "2026-11-25T15:02:40-05:00",
}


def post(client, body):
    return client.post(URL, data=json.dumps(body), content_type="application/json")


def test_feedback_is_stored_and_survives_a_restart(make_app):
    first = make_app()
    response = post(first.test_client(), {"feedback": [ACCEPTED, OVERRIDDEN]})
    assert response.status_code == 200
    first.extensions[EXTENSION].close()

    second = make_app()  # same database file, new app: a restart
    rows = second.extensions[EXTENSION].feedback.all()
    assert [(r["card_uuid"], r["outcome"]) for r in rows] == [
        (ACCEPTED["card"], "accepted"),
        (OVERRIDDEN["card"], "overridden"),
    ]
    assert rows[0]["accepted_suggestions"] == ACCEPTED["acceptedSuggestions"]
    assert rows[1]["override_reason"]["userComment"].startswith("Platelets rechecked")
    assert json.loads(rows[1]["raw"]) == OVERRIDDEN
    assert all(r["service_id"] == "ixabepilone-order-sign" for r in rows)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "feedback must be a non-empty array"),
        ({"feedback": []}, "feedback must be a non-empty array"),
        ({"feedback": [{**ACCEPTED, "card": ""}]}, "feedback[0].card is required"),
        ({"feedback": [{**ACCEPTED, "outcome": "ignored"}]}, "feedback[0].outcome must be"),
        ({"feedback": [{k: v for k, v in ACCEPTED.items() if k != "acceptedSuggestions"}]},
         "acceptedSuggestions is required for an accepted outcome"),
        ({"feedback": [OVERRIDDEN, {**OVERRIDDEN, "outcomeTimestamp": "yesterday"}]},
         "feedback[1].outcomeTimestamp 'yesterday' is not an ISO 8601"),
        ({"feedback": [{**OVERRIDDEN, "outcomeTimestamp": "2026-11-25T15:02:40"}]}, "must carry a time zone"),
        ({"feedback": [{**OVERRIDDEN, "overrideReason": {"reason": "because"}}]}, "must be a Coding"),
    ],
)
def test_invalid_feedback_is_400_and_nothing_is_stored(app, body, words):
    response = post(app.test_client(), body)
    assert response.status_code == 400
    assert words in response.get_json()["issue"][0]["diagnostics"]
    assert app.extensions[EXTENSION].feedback.all() == []


def test_feedback_for_an_unknown_service_is_404(client):
    response = client.post("/cds-services/nope/feedback", data=json.dumps({"feedback": [ACCEPTED]}),
                           content_type="application/json")
    assert response.status_code == 404


def test_store_starts_when_another_worker_created_the_table_first(tmp_path, monkeypatch):
    """Regression: two gunicorn workers racing on create_all made one fail to boot."""
    from sqlalchemy.exc import OperationalError

    from cds_services import feedback as module

    url = f"sqlite:///{tmp_path}/race.sqlite3"
    module.FeedbackStore(url).close()  # the other worker won the race

    def losing_create_all(*args, **kwargs):
        raise OperationalError("CREATE TABLE feedback", {}, Exception("table feedback already exists"))

    monkeypatch.setattr(module.metadata, "create_all", losing_create_all)
    store = module.FeedbackStore(url)
    assert store.all() == []
    store.close()
