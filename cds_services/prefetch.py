"""Prefetched data first, the EHR's FHIR server for the rest.

Spec 2.0 §prefetch: a key that is absent, or that carries an OperationOutcome
instead of data, was not prefetched and is fetched from ``fhirServer``; a key
whose value is ``null`` means the EHR looked and found nothing. If a needed
key can be had neither way the service answers 412 (requirement 54).

A search Bundle may be only the first page (FHIR R4 §search paging: a
``next`` link). Later pages are read from the same FHIR server when we may
call it; when we cannot, the answer says which data was cut short, because
silence would claim medications we never saw were checked.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from collections.abc import Mapping, Sequence
from typing import Any

from fhir_mappings.resources import resources_from_bundle

from .errors import BadRequest, PreconditionFailed
from .fhir_client import FhirClient, FhirError
from .protocol import HookRequest
from .security.fhir_access import FhirServerNotAllowed, check_fhir_server

log = logging.getLogger(__name__)

MAX_PAGES = 10  # per prefetch key, first page included; beyond it the answer says the data was cut short


def render(template: str, request: HookRequest) -> str:
    """Fill the context tokens our templates use."""
    return template.replace("{{context.patientId}}", request.patient_id).replace(
        "{{context.userId}}", request.user_id
    )


def _resources_of(key: str, value: Any) -> list[Any] | None:
    """The resources a prefetch value carries, or None when it is not data."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise BadRequest(
            f"prefetch.{key} must be a FHIR resource, a Bundle or null, got {type(value).__name__}",
            expression=[f"prefetch.{key}"],
        )
    resource_type = value.get("resourceType")
    if resource_type == "OperationOutcome":
        return None  # the EHR could not fetch it: try the FHIR server
    if resource_type == "Bundle":
        return resources_from_bundle(value)
    if not isinstance(resource_type, str):
        raise BadRequest(f"prefetch.{key} has no resourceType", expression=[f"prefetch.{key}"])
    return [value]


def _not_sent(missing: Mapping[str, str], why: str, expression: list[str]) -> PreconditionFailed:
    return PreconditionFailed(
        f"the checks need prefetch keys that were not sent ({', '.join(sorted(missing))}) and {why}",
        expression=expression,
    )


def _next_link(value: Any) -> str | None:
    """The ``next`` page URL of a search Bundle, if it has one."""
    if not isinstance(value, dict) or value.get("resourceType") != "Bundle":
        return None
    for link in value.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def _under(base_url: str, url: str) -> str | None:
    """``url`` as a query relative to ``base_url``, or None when it points anywhere else."""
    base = base_url.rstrip("/") + "/"
    if not url.startswith(base) or any(c in url for c in "\r\n"):
        return None
    return url[len(base):]


@dataclass(frozen=True)
class Gathered:
    resources: list[Any]  # raw resources from prefetch and from the FHIR server
    fetched: list[str]  # prefetch keys that were read from the FHIR server
    problems: list[str]  # data that was cut short, one sentence each (shown on a check-unavailable card)


def gather(
    request: HookRequest,
    templates: Mapping[str, str],
    client: FhirClient,
    allowed_servers: Sequence[str] = (),
    allow_http: bool = False,
) -> Gathered:
    """All raw resources for the checks: prefetch first, the FHIR server for missing keys and later pages."""
    prefetch = request.prefetch or {}
    resources: list[Any] = []
    missing: dict[str, str] = {}
    pages: dict[str, str] = {}  # key -> URL of the next page still to read
    for key, template in templates.items():
        found = _resources_of(key, prefetch[key]) if key in prefetch else None
        if found is None:
            missing[key] = render(template, request)
            continue
        resources.extend(found)
        if next_url := _next_link(prefetch[key]):
            pages[key] = next_url
    if not missing and not pages:
        return Gathered(resources, [], [])
    base_url = _server(request, missing, allowed_servers, allow_http)
    if missing:
        assert base_url is not None  # _server raised 412 otherwise
        results = client.read_many(base_url, missing, request.access_token)
        failures = {key: result for key, result in results.items() if isinstance(result, FhirError)}
        if failures:
            raise PreconditionFailed(
                "could not read the data the checks need from the FHIR server: "
                + "; ".join(f"{key}: {failures[key].reason}" for key in sorted(failures)),
                expression=[f"prefetch.{key}" for key in sorted(failures)],
            )
        for key in missing:
            resources.extend(_fetched_resources(key, results[key]))
            if next_url := _next_link(results[key]):
                pages[key] = next_url
    problems = _read_later_pages(pages, base_url, client, request.access_token, resources)
    return Gathered(resources, sorted(missing), problems)


def _server(
    request: HookRequest, missing: Mapping[str, str], allowed_servers: Sequence[str], allow_http: bool
) -> str | None:
    """The FHIR base URL we may read from; 412 when keys are missing and there is none, else None."""
    if not request.fhir_server:
        if not missing:
            return None
        raise _not_sent(missing, "the request has no fhirServer to read them from",
                        [f"prefetch.{key}" for key in sorted(missing)])
    try:
        return check_fhir_server(request.fhir_server, allowed_servers, allow_http)
    except FhirServerNotAllowed as refusal:
        # fhirServer is caller-controlled: nothing is sent to a server we do not list.
        log.warning("fhirServer refused: %s", refusal.reason)
        if not missing:
            return None
        raise _not_sent(missing, "fhirServer is not a FHIR server this service is configured to call",
                        ["fhirServer"]) from None


def _not_sent(missing: Mapping[str, str], why: str, expression: list[str]) -> PreconditionFailed:
    return PreconditionFailed(
        f"the checks need prefetch keys that were not sent ({', '.join(sorted(missing))}) and {why}",
        expression=expression,
    )


def _next_link(value: Any) -> str | None:
    """The ``next`` page URL of a search Bundle, if it has one."""
    if not isinstance(value, dict) or value.get("resourceType") != "Bundle":
        return None
    links = value.get("link")
    for link in links if isinstance(links, list) else ():
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def _relative(base_url: str, url: str) -> str | None:
    """``url`` relative to ``base_url`` ("Observation?..." or "?_getpages=..."), or None when it points
    anywhere else: a next link is data from the caller or the server, never followed off fhirServer."""
    base = base_url.rstrip("/")
    if any(c in url for c in "\r\n\t ") or not url.startswith(base):
        return None
    rest = url[len(base):]
    path = rest.split("?", 1)[0]
    if ".." in path.split("/") or "." in path.split("/"):
        return None  # a dot segment could climb out of the base path
    if rest.startswith("/") and len(rest) > 1:
        return rest[1:]
    if rest.startswith("?"):
        return rest
    return None


def _read_later_pages(
    pages: dict[str, str], base_url: str | None, client: FhirClient, token: str | None, resources: list[Any]
) -> list[str]:
    """Follow ``next`` links (all keys at once, page by page); one sentence per key cut short."""
    problems: list[str] = []
    unchecked = "data on later pages was not checked"
    page = 1
    while pages:
        page += 1
        if base_url is None:
            problems += [f"prefetch.{key} is only the first page of results and there is no FHIR server this service "
                         f"may read the rest from: {unchecked}." for key in sorted(pages)]
            break
        if page > MAX_PAGES:
            problems += [f"prefetch.{key} has more than {MAX_PAGES} pages of results: {unchecked}."
                         for key in sorted(pages)]
            break
        queries: dict[str, str] = {}
        for key, url in sorted(pages.items()):
            if (query := _relative(base_url, url)) is None:
                problems.append(f"prefetch.{key}: the next page is not on fhirServer and was not read: {unchecked}.")
            else:
                queries[key] = query
        results = client.read_many(base_url, queries, token) if queries else {}
        pages = {}
        for key, result in results.items():
            if isinstance(result, FhirError):
                problems.append(f"prefetch.{key}: page {page} of the results could not be read ({result.reason}): {unchecked}.")
            elif isinstance(result, dict) and result.get("resourceType") == "Bundle":
                resources.extend(resources_from_bundle(result))
                if next_url := _next_link(result):
                    pages[key] = next_url
            else:
                problems.append(f"prefetch.{key}: page {page} of the results is not a Bundle: {unchecked}.")
    return problems


def _fetched_resources(key: str, value: Any) -> list[Any]:
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        return resources_from_bundle(value)
    if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
        return [value]
    raise PreconditionFailed(f"the FHIR server's answer for {key} is not a FHIR resource")
