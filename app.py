"""The Flask application factory, and ``app`` for WSGI servers (``gunicorn app:app``).

``create_app`` wires everything once: settings from the ``CDS_`` environment,
the knowledge base (validated, or the service refuses to start), the feedback
store, the FHIR client, CORS, the error handlers and the blueprints.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import requests
from flask import Flask
from flask.json.provider import DefaultJSONProvider


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    config: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], datetime] | None = None,
    session: requests.Session | None = None,
) -> Flask:
    """Build the app. ``config`` overrides settings (tests); ``clock`` fixes "now"."""
    from cds_services.analytics import ServedLog, check_silent_rules
    from cds_services.api import bp as cds_blueprint
    from cds_services.config import load_settings
    from cds_services.cors import install_cors
    from cds_services.errors import register_error_handlers
    from cds_services.feedback import FeedbackStore, default_instance_path, default_sqlite_url
    from cds_services.fhir_client import FhirClient, FhirClientSettings
    from cds_services.knowledge import load_knowledge
    from cds_services.logs import configure_logging
    from cds_services.runtime import EXTENSION, Runtime

    settings = load_settings(environ, config)
    configure_logging(settings.log_level)
    if settings.allow_unauthenticated:
        logging.getLogger("cds.security").warning(
            "AUTHENTICATION IS OFF (CDS_ALLOW_UNAUTHENTICATED=true): any caller can invoke "
            "the services. Use this for local development only."
        )

    app = Flask(__name__, instance_path=default_instance_path())
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    assert isinstance(app.json, DefaultJSONProvider)  # Flask's own, unless a subclass sets another
    app.json.sort_keys = False  # keep the spec's field order in cards

    kb = load_knowledge(settings.knowledge_path)
    check_silent_rules(settings.silent_rules, kb.rules)
    if settings.silent_rules:
        logging.getLogger("cds.analytics").warning(
            "SILENT MODE for %s (CDS_SILENT_RULES): their cards are computed and logged for the analytics "
            "but not returned to the EHR",
            "every rule" if "*" in settings.silent_rules else ", ".join(settings.silent_rules),
        )
    database_url = settings.database_url
    if database_url is None:
        os.makedirs(app.instance_path, exist_ok=True)
        database_url = default_sqlite_url(app.instance_path)
    fhir = FhirClient(
        FhirClientSettings(
            connect_timeout=settings.fhir_connect_timeout,
            read_timeout=settings.fhir_read_timeout,
            max_workers=settings.fhir_max_workers,
            max_response_bytes=settings.fhir_max_response_bytes,
            max_waiting_calls=settings.fhir_max_waiting_calls,
        ),
        session=session,
    )
    verifier = clients = None
    if not settings.allow_unauthenticated:
        from sqlalchemy import create_engine

        from cds_services.security.clients import load_trusted_clients
        from cds_services.security.jwks import JwksCache
        from cds_services.security.replay import MemoryReplayStore, SqlReplayStore
        from cds_services.security.tokens import ClientVerifier

        assert settings.trusted_clients is not None  # load_settings refuses authentication without clients
        clients = load_trusted_clients(settings.trusted_clients)
        replay = (
            SqlReplayStore(create_engine(database_url, pool_pre_ping=True))  # survive a database restart
            if settings.replay_store == "database"
            else MemoryReplayStore()
        )
        verifier = ClientVerifier(
            clients,
            JwksCache(clients, session or requests.Session()),
            replay,
            max_lifetime_seconds=settings.jwt_max_lifetime,
            leeway_seconds=settings.jwt_leeway,
        )
    feedback = FeedbackStore(database_url)
    clock = clock or _utc_now
    runtime = Runtime(
        settings=settings,
        kb=kb,
        feedback=feedback,
        fhir=fhir,
        clock=clock,
        verifier=verifier,
        clients=clients,
        analytics=ServedLog(feedback.engine, clock=clock, retention_days=settings.analytics_retention_days),
    )
    app.extensions[EXTENSION] = runtime

    install_cors(app, settings.cors_origins, settings.cors_allow_credentials)
    register_error_handlers(app)
    app.register_blueprint(cds_blueprint)
    if settings.analytics_token:  # otherwise /analytics and /analytics.json are the ordinary 404
        from cds_services.analytics.views import bp as analytics_blueprint

        app.register_blueprint(analytics_blueprint)
    return app


app: Flask  # built on first use by __getattr__ below (PEP 562)


def __getattr__(name: str) -> Any:
    """``app.app`` is built on first use, so importing this module has no side effects."""
    if name == "app":
        global app  # noqa: PLW0603 (PEP 562: built once, then found without calling __getattr__ again)
        app = create_app()
        return app
    raise AttributeError(name)
