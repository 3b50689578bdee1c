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
