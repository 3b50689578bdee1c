"""The /analytics page in a real browser: Debian's Chromium, headless, as a pharmacist would open it.

Six weeks of a ward's orders and feedback go through the HTTP API (see
``tests/analytics_support.six_weeks``); the page is then served over real
HTTP and loaded in Chromium with the committee's token. What must hold: the
three SVG charts are laid out with a non-zero size, every bar that stands for
a non-zero count has a width, the weekly rate line is drawn, the numbers in
the table are the ones posted, the alert-fatigue candidate is named, and the
page fetched nothing but itself. A screenshot of the whole page is taken
(``ANALYTICS_SCREENSHOT=docs/analytics.png`` keeps it; README).

Chromium is installed with apt-get on first use (``tests/integration/chromium.py``).
If that fails the test FAILS under CI and is skipped elsewhere, like the FHIR
server tests: a green CI never means "the browser did not run".
"""
from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from cds_services.runtime import EXTENSION
from tests.analytics_support import TOKEN, six_weeks
from tests.conftest import FIXED_NOW
from tests.integration import chromium

CHARTS = ("chart-rules", "chart-weeks", "chart-reasons")


@pytest.fixture(scope="session")
def chromium_path(in_ci: bool) -> str:
    try:
        return chromium.install()
    except chromium.ChromiumError as exc:
        message = f"headless Chromium unavailable: {exc}"
        if in_ci:
            pytest.fail(message, pytrace=False)
        pytest.skip(f"{message} (under CI=true this fails)")


@pytest.fixture
def browser(chromium_path: str) -> Iterator[chromium.Browser]:
    opened = chromium.Browser(chromium_path)
    yield opened
    opened.close()


@pytest.fixture
def committee_site(make_app) -> Iterator[str]:
    """The six weeks posted through the API, then the service on a real port; its base URL."""
    made: list[Any] = []

    def client_at(moment):
        for earlier in made:
            earlier.extensions[EXTENSION].analytics.flush()  # as its writer would within a second
        made.append(make_app({"analytics_token": TOKEN, "silent_rules": ("neuropathy-risk",)}, clock=lambda: moment))
        return made[-1].test_client()

    six_weeks(client_at, FIXED_NOW)
    site = client_at(FIXED_NOW).application
    server = make_server("127.0.0.1", 0, site, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


SIZES = """JSON.stringify(Object.fromEntries([...document.querySelectorAll('svg.chart')].map(svg => {
  const box = svg.getBoundingClientRect();
  return [svg.id, {width: box.width, height: box.height,
    bars: [...svg.querySelectorAll('rect.bar')].map(r => [r.getAttribute('class'), r.getBoundingClientRect().width,
                                                          r.querySelector('title').textContent]),
    line: [...svg.querySelectorAll('polyline.rate-line')].map(p => p.getBBox().width),
    points: svg.querySelectorAll('circle.point').length}];
})))"""

ROW = """JSON.stringify([...document.querySelectorAll('#rules-table tbody tr')].map(tr =>
  [tr.dataset.code, [...tr.querySelectorAll('td')].slice(1, 8).map(td => td.innerText.trim())]))"""


def test_the_page_renders_its_charts_and_numbers_in_chromium(committee_site, browser, tmp_path):
    import json

    response = browser.open(committee_site + "/analytics?since=42", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response["status"] == 200 and response["mimeType"] == "text/html"
    assert browser.requested_urls() == [committee_site + "/analytics?since=42"]  # no CDN, no script, no font fetched

    charts = json.loads(browser.evaluate(SIZES))
    assert set(charts) == set(CHARTS)
    for name in CHARTS:
        assert charts[name]["width"] > 300 and charts[name]["height"] > 50, (name, charts[name])
    for kind, width, title in charts["chart-rules"]["bars"] + charts["chart-reasons"]["bars"]:
        count = int(title.rsplit(": ", 1)[1].split()[0].replace(",", ""))
        assert (width > 0) == (count > 0), (kind, width, title)
    assert charts["chart-weeks"]["points"] == 6 and charts["chart-weeks"]["line"][0] > 300

    rows = dict(json.loads(browser.evaluate(ROW)))
    # Level, Shown, Silent, Accepted, Overridden, No response, Override rate
    assert rows["premedication-missing"] == ["info 36", "36", "0", "1", "35", "0", "97%"]
    assert rows["platelets-low"] == ["critical 18", "18", "0", "12", "6", "0", "33%"]
    assert rows["dose-check"] == ["warning 12", "12", "0", "0", "6", "6", "100%"]
    assert rows["neuropathy-risk"] == ["—", "0", "6", "0", "0", "0", "n/a"]
    flags = browser.evaluate("[...document.querySelectorAll('.flag')].map(d => d.dataset.code).join(',')")
    assert flags == "premedication-missing"  # dose-check: 100% but only 6 answered

    shot = browser.screenshot()
    width, height = png_size(shot)
    assert width >= 1000 and height > 1500
    target = Path(os.environ.get("ANALYTICS_SCREENSHOT") or tmp_path / "analytics.png")
    target.write_bytes(shot)

    # A wrong token, no numbers: Chromium finds the Basic challenge and, headless, has nobody to ask.
    with pytest.raises(chromium.ChromiumError, match="ERR_INVALID_AUTH_CREDENTIALS"):
        browser.open(committee_site + "/analytics", headers={"Authorization": "Bearer not-the-token"})
    assert browser.evaluate("document.querySelectorAll('svg').length") == 0


def test_a_browser_answers_the_login_prompt_with_the_token(committee_site, browser):
    """A pharmacist opens the page, the browser asks, and the token typed in is sent (Basic, as the password).

    Credentials in the URL are what Chromium answers a Basic challenge with; it asks only if it finds one it
    can answer, and it reads each WWW-Authenticate header as one challenge (a combined
    "Bearer ..., Basic ..." line was a Bearer challenge to it, and the page showed the JSON error).
    """
    host = committee_site.removeprefix("http://")
    response = browser.open(f"http://pharmacist:{TOKEN}@{host}/analytics")
    assert response["status"] == 200 and response["mimeType"] == "text/html"
    assert browser.evaluate("document.querySelectorAll('svg.chart').length") == len(CHARTS)
