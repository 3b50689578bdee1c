"""``python -m cds_services.analytics``: the same numbers as /analytics.json, in a terminal."""
from __future__ import annotations

import json
import re

import pytest

from cds_services.analytics.cli import main
from cds_services.runtime import EXTENSION
from tests.analytics_support import TOKEN, accepted, auth, call, card_of, overridden, send_feedback
from tests.conftest import FIXED_NOW


@pytest.fixture
def served(make_app, tmp_path):
    """Cards served and answered through the HTTP API; the database URL the CLI is pointed at."""
    app = make_app({"analytics_token": TOKEN, "silent_rules": ("neuropathy-risk",)})
    client = app.test_client()
    platelets = [card_of(call(client, "platelets-low"), "platelets-low") for _ in range(3)]
    interaction = call(client, "cyp3a4-strong-inhibitor")
    call(client, "neuropathy-risk")
    send_feedback(client, [accepted(platelets[0]), overridden(platelets[1], "data-outdated", "Recount 112,000"),
                           overridden(card_of(interaction, "dose-check"), "benefit-outweighs-risk")])
    app.extensions[EXTENSION].analytics.flush()
    endpoint = client.get("/analytics.json", headers=auth()).get_json()
    return f"sqlite:///{tmp_path}/feedback.sqlite3", endpoint


def run(capsys, argv, url, **environ):
    code = main(argv, environ={"CDS_DATABASE_URL": url, **environ}, now=FIXED_NOW)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_is_the_endpoints_document(served, capsys):
    url, endpoint = served
    code, out, _ = run(capsys, ["--json"], url, CDS_SILENT_RULES="neuropathy-risk")
    assert code == 0 and json.loads(out) == endpoint


def test_the_table_prints_the_same_numbers(served, capsys):
    url, _ = served
    code, out, _ = run(capsys, [], url, CDS_SILENT_RULES="neuropathy-risk")
    assert code == 0
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line[:1].isalpha() and "  " in line}
    # Shown, Silent, Accepted, Overridden, No response, Override rate
    assert lines["platelets-low"] == ["3", "0", "1", "1", "1", "50%"]
    assert lines["dose-check"] == ["1", "0", "0", "1", "0", "100%"]
    assert lines["cyp3a4-strong-inhibitor"] == ["1", "0", "0", "0", "1", "n/a"]
    assert lines["neuropathy-risk"] == ["0", "1", "0", "0", "0", "n/a"]
    assert lines["TOTAL"] == ["5", "1", "1", "2", "2", "67%"]
    assert "Silent mode (computed, not shown): neuropathy-risk" in out
    assert "platelets-low: Data shown is outdated or wrong 1 (1 with comment)" in out
    assert "Recount 112,000" not in out
    assert "Alert-fatigue candidates (override rate above 90% over at least 30 answered cards): none" in out


def test_html_writes_the_page(served, capsys, tmp_path):
    url, _ = served
    target = tmp_path / "analytics.html"
    code, _, err = run(capsys, ["--since", "7", "--html", str(target)], url)
    assert code == 0 and f"wrote {target}" in err
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "Last 7 days" in page
    assert len(re.findall(r'<svg class="chart"', page)) == 3


@pytest.mark.parametrize("argv, environ, message", [
    (["--since", "0"], {}, "--since must be from 1 to 400 days"),
    (["--since", "31"], {"CDS_ANALYTICS_RETENTION_DAYS": "30"}, "--since must be from 1 to 30 days"),
    ([], {"CDS_ANALYTICS_RETENTION_DAYS": "zero"}, "CDS_ANALYTICS_RETENTION_DAYS='zero'"),
])
def test_bad_arguments_and_settings_exit_2_with_the_reason(served, capsys, argv, environ, message):
    url, _ = served
    code, out, err = run(capsys, argv, url, **environ)
    assert (code, out) == (2, "") and message in err


def test_a_database_the_service_never_wrote_to_is_reported_not_created(capsys, tmp_path):
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    code, out, err = run(capsys, [], f"sqlite:///{empty}")
    assert (code, out) == (2, "") and "no cards_served table" in err


def test_with_no_database_url_it_reads_the_services_default_file(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("cds_services.analytics.cli.default_instance_path", lambda: str(tmp_path / "instance"))
    code = main([], environ={}, now=FIXED_NOW)
    assert code == 2
    assert f"no database at {tmp_path}/instance/feedback.sqlite3" in capsys.readouterr().err
    assert not (tmp_path / "instance").exists()
