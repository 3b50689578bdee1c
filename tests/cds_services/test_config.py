"""Settings from the CDS_ environment: a bad value stops the service with a clear message."""
from __future__ import annotations

import pytest

from cds_services.config import ConfigError, load_settings


def test_authentication_is_on_unless_explicitly_turned_off():
    with pytest.raises(ConfigError) as error:
        load_settings({})
    assert "no trusted CDS clients" in str(error.value)
    assert "CDS_ALLOW_UNAUTHENTICATED=true" in str(error.value)


def test_authentication_needs_the_public_base_url():
    with pytest.raises(ConfigError) as error:
        load_settings({"CDS_TRUSTED_CLIENTS": '[{"iss": "https://ehr.example.org", "jwks_url": "https://ehr.example.org/jwks"}]'})
    assert "CDS_PUBLIC_BASE_URL is not set" in str(error.value)
    assert "CDS_PUBLIC_BASE_URL=https://" in str(error.value)  # what to set
    settings = load_settings({
        "CDS_TRUSTED_CLIENTS": '[{"iss": "https://ehr.example.org", "jwks_url": "https://ehr.example.org/jwks"}]',
        "CDS_PUBLIC_BASE_URL": "https://cds.hospital.example",
    })
    assert settings.public_base_url == "https://cds.hospital.example"


def test_security_defaults():
    settings = load_settings({"CDS_ALLOW_UNAUTHENTICATED": "true"})
    assert settings.replay_store == "database"  # shared by every gunicorn worker
    assert settings.jwt_max_lifetime == 3600  # best practices: "no more than an hour"
    assert load_settings({"CDS_ALLOW_UNAUTHENTICATED": "true", "CDS_REPLAY_STORE": "memory"}).replay_store == "memory"


def test_defaults_need_no_external_server():
    settings = load_settings({"CDS_ALLOW_UNAUTHENTICATED": "true"})
    assert settings.allow_unauthenticated is True
    assert settings.database_url is None  # SQLite in the instance folder
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.fhir_servers == ()  # no FHIR server is called unless listed


def test_environment_is_read():
    settings = load_settings({
        "CDS_ALLOW_UNAUTHENTICATED": "1",
        "CDS_FHIR_SERVERS": "https://ehr.example.org/fhir/, http://127.0.0.1:8090/fhir",
        "CDS_DATABASE_URL": "postgresql+psycopg://cds@db/cds",
        "CDS_CORS_ORIGINS": "https://sandbox.cds-hooks.org, https://ehr.example.org",
        "CDS_PUBLIC_BASE_URL": "https://cds.example.org/",
        "CDS_FHIR_READ_TIMEOUT": "2.5",
    })
    assert settings.database_url.startswith("postgresql")
    assert settings.cors_origins == ("https://sandbox.cds-hooks.org", "https://ehr.example.org")
    assert settings.public_base_url == "https://cds.example.org"
    assert settings.fhir_read_timeout == 2.5
    assert settings.fhir_servers == ("https://ehr.example.org/fhir", "http://127.0.0.1:8090/fhir")


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({"CDS_FHIR_READ_TIMEOUT": "soon"}, "CDS_FHIR_READ_TIMEOUT='soon'"),
        ({"CDS_FHIR_CONNECT_TIMEOUT": "0"}, "must be greater than 0"),
        ({"CDS_CORS_ORIGINS": "sandbox.cds-hooks.org/path"}, "is not an origin"),
        ({"CDS_CORS_ORIGINS": "*", "CDS_CORS_ALLOW_CREDENTIALS": "true"}, "cannot be combined"),
        ({"CDS_PUBLIC_BASE_URL": "ftp://x"}, "expected an http(s) URL"),
        ({"CDS_LOG_LEVEL": "loud"}, "CDS_LOG_LEVEL"),
        ({"CDS_KNOWLEDGE_PATH": "/nonexistent/kb.json"}, "no such file"),
        ({"CDS_DATABSE_URL": "sqlite://"}, "unknown setting(s) CDS_DATABSE_URL"),
        ({"CDS_ALLOW_UNAUTHENTICATED": "maybe"}, "expected true or false"),
        ({"CDS_REPLAY_STORE": "redis"}, "expected memory or database"),
        ({"CDS_FHIR_SERVERS": "ehr.example.org"}, "is not an http(s) base URL"),
    ],
)
def test_bad_values_stop_the_service(environ, words):
    with pytest.raises(ConfigError) as error:
        load_settings({"CDS_ALLOW_UNAUTHENTICATED": "true", **environ})
    assert words in str(error.value)


def test_create_app_refuses_to_start_on_bad_config(tmp_path):
    from app import create_app

    with pytest.raises(ConfigError):
        create_app(environ={"CDS_MAX_BODY_BYTES": "-1"})


# ---------------------------------------------------------------- analytics and silent mode (issue 14)

OPEN = {"CDS_ALLOW_UNAUTHENTICATED": "true"}


def test_analytics_are_off_and_nothing_is_silent_by_default():
    settings = load_settings(OPEN)
    assert settings.analytics_token is None
    assert settings.analytics_retention_days == 400
    assert settings.silent_rules == ()


def test_analytics_and_silent_settings_are_read():
    settings = load_settings({**OPEN, "CDS_ANALYTICS_TOKEN": " aV3ryL0ngRandomT0ken ",
                              "CDS_ANALYTICS_RETENTION_DAYS": "730",
                              "CDS_SILENT_RULES": "premedication-missing, neuropathy-risk,premedication-missing"})
    assert settings.analytics_token == "aV3ryL0ngRandomT0ken"
    assert settings.analytics_retention_days == 730
    assert settings.silent_rules == ("premedication-missing", "neuropathy-risk")
    assert load_settings({**OPEN, "CDS_SILENT_RULES": "*"}).silent_rules == ("*",)
    assert load_settings({**OPEN, "CDS_ANALYTICS_TOKEN": ""}).analytics_token is None


@pytest.mark.parametrize("token", ["fifteen-chars-x", "with a space inside it", "t\u00f6ken-with-umlaut-ok?"])
def test_a_weak_or_unsendable_analytics_token_stops_the_start_without_echoing_it(token):
    with pytest.raises(ConfigError) as error:
        load_settings({**OPEN, "CDS_ANALYTICS_TOKEN": token})
    assert "CDS_ANALYTICS_TOKEN" in str(error.value) and "16" in str(error.value)
    assert token not in str(error.value)


def test_a_16_character_token_is_enough():
    assert load_settings({**OPEN, "CDS_ANALYTICS_TOKEN": "x" * 16}).analytics_token == "x" * 16


@pytest.mark.parametrize("value, message", [
    ("0", "must be greater than 0"),
    ("-30", "must be greater than 0"),
    ("a year", "expected a positive int"),
    ("365.5", "expected a positive int"),
    ("36526", "at most 36525 days"),
    ("999999", "at most 36525 days"),  # "keep forever": a cut-off before year 1, every purge failed
])
def test_a_bad_retention_stops_the_start(value, message):
    with pytest.raises(ConfigError, match=f"CDS_ANALYTICS_RETENTION_DAYS=.*{message}"):
        load_settings({**OPEN, "CDS_ANALYTICS_RETENTION_DAYS": value})


@pytest.mark.parametrize("value, message", [
    ("*, platelets-low", "give either '\\*' or a list"),
    ("Platelets-Low", "is not a rule code"),
    ("platelets low", "is not a rule code"),
])
def test_a_malformed_silent_rules_list_stops_the_start(value, message):
    with pytest.raises(ConfigError, match=f"CDS_SILENT_RULES.*{message}"):
        load_settings({**OPEN, "CDS_SILENT_RULES": value})
