"""Request text cannot become Markdown in a card.

Cards' ``detail`` is GitHub Flavored Markdown (CDS Hooks 2.0 §card-attributes),
and the EHR renders it in front of the clinician. Drug names, allergy and
condition labels, lab values as recorded and problem sentences come from the
request: a display name ``[Refill](javascript:...)`` must show as those
characters, not as a link. Each case puts injection strings into one field of
a real request and renders every card with cmark-gfm (GitHub's own renderer,
raw HTML let through so that none can hide)."""
from __future__ import annotations

import copy
import json
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options

from tests.conftest import FIXTURES, load_json

SIGN = "/cds-services/ixabepilone-order-sign"

INJECTIONS = {
    "link": "[x](javascript:alert(1))",
    "image": "![img](http://evil.example/pixel.png)",
    "raw-html": "<img src=x onerror=alert(1)><script>alert(1)</script>",
    "autolinks": "see <http://evil.example> http://evil.example www.evil.example nurse@evil.example",
    "code": "`rm -rf /` ```",
    "heading": "Paclitaxel\n# Urgent: stop all orders\n- item\n> quote\n1. step",
    "table": "| a | b |\n|---|---|\n| c | d |",
    "emphasis": "**shout** _lean_ ~~gone~~ &lt;b&gt;",
}
# Tags our own wording produces: paragraphs, lists, bold.
OUR_TAGS = {"p", "ul", "li", "strong"}


def entry_resources(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in body["prefetch"][key]["entry"]]


def allergy_text(body: dict[str, Any], text: str) -> None:
    for allergy in entry_resources(body, "allergies"):
        allergy["code"]["text"] = f"{allergy['code']['text']} {text}"


def medication_text(body: dict[str, Any], text: str) -> None:
    for request in entry_resources(body, "medicationRequests"):
        if "ketoconazole" in json.dumps(request).lower():
            request["medicationCodeableConcept"]["text"] = f"ketoconazole {text}"


def draft_text(body: dict[str, Any], text: str) -> None:
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft["medicationCodeableConcept"]["text"] = f"Ixabepilone {text}"


def condition_text(body: dict[str, Any], text: str) -> None:
    for condition in entry_resources(body, "conditions"):
        condition["code"]["text"] = text


def lab_unit(body: dict[str, Any], text: str) -> None:
    """An unknown unit: the latest platelet count goes to check-unavailable, quoted as recorded."""
    for observation in entry_resources(body, "labs"):
        if observation["code"]["coding"][0]["code"] == "777-3":
            observation["valueQuantity"] = {"value": 80, "unit": text}


def vaccine_text(body: dict[str, Any], text: str) -> None:
    for immunization in entry_resources(body, "immunizations"):
        immunization["vaccineCode"]["text"] = f"MMR {text}"


def procedure_text(body: dict[str, Any], text: str) -> None:
    for procedure in entry_resources(body, "procedures"):
        procedure["code"]["text"] = f"Radiotherapy {text}"


def outcome_diagnostics(body: dict[str, Any], text: str) -> None:
    """The EHR could not fetch a key and says why in its own words (spec 2.0 §prefetch: an
    OperationOutcome in place of the data); with no fhirServer, check-unavailable quotes them."""
    body["prefetch"]["procedures"] = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "exception", "diagnostics": text}]}


CASES: dict[str, tuple[str, Callable[[dict[str, Any], str], None]]] = {
    "allergy label": ("hypersensitivity", allergy_text),
    "interacting drug name": ("cyp3a4-strong-inhibitor", medication_text),
    "ixabepilone draft name": ("dose-check", draft_text),
    "condition label": ("neuropathy-risk", condition_text),
    "lab value as recorded": ("platelets-low", lab_unit),
    "vaccine name": ("live-vaccine", vaccine_text),
    "procedure name": ("radiation-recall", procedure_text),
    "EHR's OperationOutcome text": ("platelets-low", outcome_diagnostics),
}


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.add(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def render(markdown: str) -> Tags:
    html = cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)
    parsed = Tags()
    parsed.feed(html)
    return parsed


def cards_for(client, fixture: str, mutate: Callable[[dict[str, Any], str], None], text: str) -> list[dict[str, Any]]:
    body = copy.deepcopy(load_json(FIXTURES / "http" / f"{fixture}.json"))
    mutate(body, text)
    response = client.post(SIGN, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.get_json()["cards"]


@pytest.mark.parametrize("injection", INJECTIONS.values(), ids=INJECTIONS.keys())
@pytest.mark.parametrize("case", CASES, ids=CASES.keys())
def test_request_text_renders_as_text(client, case, injection):
    fixture, mutate = CASES[case]
    cards = cards_for(client, fixture, mutate, injection)
    shown = []
    for card in cards:
        rendered = render(card["detail"])
        assert rendered.tags <= OUR_TAGS, f"{case}: {sorted(rendered.tags - OUR_TAGS)} in\n{card['detail']}"
        shown.append("".join(rendered.text).replace("\u200b", ""))
    # The text reached a card, character for character (line breaks become spaces).
    visible = " ".join(injection.split())
    assert any(visible in " ".join(text.split()) for text in shown), f"{case}: {visible!r} not shown in {shown}"


def test_card_links_point_only_to_our_sources(client):
    """No card carries links, and every source URL is one of the knowledge base's sources."""
    sources = set(client.get("/cds-services").get_json()["services"][0]["extension"][
        "org.ixabepilone-cds.knowledge"]["sources"].values())
    for fixture, mutate in CASES.values():
        for card in cards_for(client, fixture, mutate, INJECTIONS["link"]):
            assert "links" not in card
            assert card["source"].get("url", next(iter(sources))) in sources
