"""Prefetched data first, the EHR's FHIR server for the rest.

Spec 2.0 §prefetch: a key that is absent, or that carries an OperationOutcome
instead of data, was not prefetched and is fetched from ``fhirServer``; a key
whose value is ``null`` means the EHR looked and found nothing.

Partial data never hides a card (README, "Partial data"): a key that can be
had neither way (no server, a server we may not call, 400/403/404 for a
resource type it does not support, a refusal, the call's deadline) is named
in :attr:`Gathered.unavailable` and the checks run on everything else. Only
when no key at all could be had is the answer 412 (requirement 54: the
service cannot obtain the data it needs).

A search Bundle may be only the first page (FHIR R4 §search paging: a
``next`` link). Later pages are read from the same FHIR server when we may
call it; when we cannot, or when a Bundle's ``total`` says it holds fewer
entries than matched and it has no ``next`` link, the answer says which data
was cut short, because silence would claim medications we never saw were
checked. Medications that orders reference by id, and that were neither
contained nor sent, are read with one batched search.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fhir_mappings.jsonlike import OBJECT_TYPES, is_array, is_object, to_python
from fhir_mappings.references import split_reference
from fhir_mappings.resources import resources_from_bundle

from .errors import BadRequest, PreconditionFailed
from .fhir_client import FhirClient, FhirError
from .protocol import FHIR_ID, HookRequest
from .security.fhir_access import FhirServerNotAllowed, check_fhir_server

log = logging.getLogger(__name__)

MAX_PAGES = 10  # per prefetch key, first page included; beyond it the answer says the data was cut short
MAX_MEDICATION_IDS = 100  # referenced Medications read in one search (_count covers them all)
_UNCHECKED = "data on later pages was not checked"
_ALL_BUSY = "this service's FHIR reads are all busy with other calls (CDS_FHIR_MAX_WAITING_CALLS)"
_IDS_SHOWN = 5  # Medication ids named in the problem sentence when their search fails


def render(template: str, request: HookRequest) -> str:
    """Fill the context tokens our templates use."""
    return template.replace("{{context.patientId}}", request.patient_id).replace(
        "{{context.userId}}", request.user_id
    )


@dataclass(frozen=True)
class Gathered:
    resources: list[Any]  # raw resources from prefetch and from the FHIR server
    problems: list[str]  # data that was cut short, one sentence each (shown on a check-unavailable card)
    unavailable: dict[str, str] = field(default_factory=dict)  # prefetch key -> why it could not be had


def _outcome_text(value: Mapping[str, Any]) -> str:
    value = to_python(value)
    issues = issues if isinstance(issues := value.get("issue"), list) else []
    texts = [str(i.get("diagnostics") or i.get("code") or "")[:120] for i in issues if isinstance(i, Mapping)]
    texts = [t for t in texts if t]
    instead = "the EHR sent an OperationOutcome instead"
    return f"{instead} ({'; '.join(texts)})" if texts else instead


def _resources_of(key: str, value: Any) -> list[Any] | None:
    """The resources a prefetch value carries, or None when it is not data."""
    if value is None:
        return []
    if not is_object(value):
        raise BadRequest(
            f"prefetch.{key} must be a FHIR resource, a Bundle or null, got {_json_type(value)}",
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


def _json_type(value: Any) -> str:
    """The JSON name of a non-object value, for the 400 message."""
    if is_array(value):
        return "list"
    return type(value).__name__


def _next_link(value: Any) -> str | None:
    """The ``next`` page URL of a search Bundle, if it has one."""
    if not is_object(value) or value.get("resourceType") != "Bundle":
        return None
    links = value.get("link")
    for link in links if is_array(links) else ():
        if is_object(link) and link.get("relation") == "next" and isinstance(url := link.get("url"), str):
            return str(url)
    return None


def _matches(bundle: Mapping[str, Any]) -> int:
    """Entries that matched the search (``search.mode`` "include" and "outcome" entries are not counted
    in ``total``)."""
    entries = bundle.get("entry")
    if not is_array(entries):
        return 0
    # isinstance, not is_object: this runs once per entry of every page (a function call each adds up).
    return sum(1 for e in entries if isinstance(e, OBJECT_TYPES) and not (
        isinstance(search := e.get("search"), OBJECT_TYPES) and search.get("mode") in ("include", "outcome")))


def _cut_short(key: str, value: Any) -> str | None:
    """A sentence when a last page's ``total`` says more matched than were sent (and no ``next`` follows).

    Only a single-page answer is judged: ``total`` counts the matches of every page.
    """
    if not is_object(value) or value.get("resourceType") != "Bundle" or _next_link(value):
        return None
    total = value.get("total")
    if not isinstance(total, int) or isinstance(total, bool):
        return None
    read = _matches(value)
    if isinstance(total, int) and not isinstance(total, bool) and total > read:
        return (f"prefetch.{key} says {total} resources matched but holds {read}, with no next page to read "
                f"the rest: {total - read} were not checked.")
    return None


def _queue_next_page(key: str, first_page: Any, pages: dict[str, str], problems: list[str]) -> None:
    """A first page's ``next`` link is queued to be read; a last page that says more matched is a problem."""
    if next_url := _next_link(first_page):
        pages[key] = next_url
    elif problem := _cut_short(key, first_page):
        problems.append(problem)


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


class _Reader:
    """The FHIR side of one hook call: one server, one token, one deadline."""

    def __init__(self, client: FhirClient, base_url: str | None, token: str | None, deadline: float | None):
        self.client, self.base_url, self.token, self.deadline = client, base_url, token, deadline

    def read_many(self, queries: Mapping[str, str]) -> dict[str, Any | FhirError]:
        assert self.base_url is not None
        return self.client.read_many(self.base_url, queries, self.token, self.deadline)


def gather(
    request: HookRequest,
    templates: Mapping[str, str],
    client: FhirClient,
    *,
    allowed_servers: Sequence[str] = (),
    allow_http: bool = False,
    deadline: float | None = None,
) -> Gathered:
    """All raw resources for the checks: prefetch first, the FHIR server for missing keys and later pages.

    ``deadline`` (a time.monotonic() value) bounds every FHIR read of the call together.
    """
    prefetch = request.prefetch or {}
    resources: list[Any] = []
    problems: list[str] = []
    missing: dict[str, str] = {}  # key -> query
    why_missing: dict[str, str] = {}
    pages: dict[str, str] = {}  # key -> URL of the next page still to read
    for key, template in templates.items():
        value = prefetch.get(key)
        found = _resources_of(key, value) if key in prefetch else None
        if found is None:
            missing[key] = render(template, request)
            why_missing[key] = _outcome_text(value) if is_object(value) else "not prefetched"
            continue
        resources.extend(found)
        _queue_next_page(key, value, pages, problems)
    base_url, no_server = _server(request, allowed_servers, allow_http)
    if base_url is None or not (missing or pages or _unresolved_medications(resources)):
        unavailable = {key: f"{why_missing[key]}, and {no_server}" for key in missing}
        problems += _pages_without_server(pages) if pages else []
        return _result(resources, problems, unavailable, templates)
    with client.waiting_slot() as slot:
        if not slot:
            busy = f"not read: {_ALL_BUSY}"
            unavailable = {key: f"{why_missing[key]}, and {busy}" for key in missing}
            problems += [f"prefetch.{key}: {busy}: {_UNCHECKED}." for key in sorted(pages)]
            return _result(resources, problems, unavailable, templates)
        reader = _Reader(client, base_url, request.access_token, deadline)
        unavailable = {}
        if missing:
            results = reader.read_many(missing)
            for key in missing:
                result = results[key]
                if isinstance(result, FhirError):
                    unavailable[key] = f"{why_missing[key]}; the FHIR server read failed: {result.reason}"
                    continue
                found = _fetched_resources(result)
                if found is None:
                    unavailable[key] = f"{why_missing[key]}; the FHIR server's answer is not a FHIR resource"
                    continue
                resources.extend(found)
                _queue_next_page(key, result, pages, problems)
        problems += _read_later_pages(pages, reader, resources)
        problems += _read_medications(reader, resources)
    return _result(resources, problems, unavailable, templates)


def _result(resources: list[Any], problems: list[str], unavailable: dict[str, str],
            templates: Mapping[str, str]) -> Gathered:
    """The gathered data; 412 when not one key could be had (spec 2.0 requirement 54)."""
    if unavailable and len(unavailable) == len(templates):
        raise PreconditionFailed(
            "none of the data the checks need could be had: "
            + "; ".join(f"{key}: {unavailable[key]}" for key in sorted(unavailable)),
            expression=[f"prefetch.{key}" for key in sorted(unavailable)],
        )
    return Gathered(resources, problems, unavailable)


def _server(request: HookRequest, allowed_servers: Sequence[str], allow_http: bool) -> tuple[str | None, str]:
    """(the FHIR base URL we may read from, or None and why not)."""
    if not request.fhir_server:
        return None, "the request has no fhirServer to read it from"
    try:
        return check_fhir_server(request.fhir_server, allowed_servers, allow_http), ""
    except FhirServerNotAllowed as refusal:
        # fhirServer is caller-controlled: nothing is sent to a server we do not list.
        log.warning("fhirServer refused: %s", refusal.reason)
        return None, "fhirServer is not a FHIR server this service is configured to call"


def _pages_without_server(pages: Mapping[str, str]) -> list[str]:
    return [f"prefetch.{key} is only the first page of results and there is no FHIR server this service "
            f"may read the rest from: {_UNCHECKED}." for key in sorted(pages)]


def _read_later_pages(pages: dict[str, str], reader: _Reader, resources: list[Any]) -> list[str]:
    """Follow ``next`` links (all keys at once, page by page); one sentence per key cut short."""
    problems: list[str] = []
    page = 1
    while pages:
        page += 1
        if page > MAX_PAGES:
            problems += [f"prefetch.{key} has more than {MAX_PAGES} pages of results: {_UNCHECKED}."
                         for key in sorted(pages)]
            break
        queries: dict[str, str] = {}
        assert reader.base_url is not None
        for key, url in sorted(pages.items()):
            if (query := _relative(reader.base_url, url)) is None:
                problems.append(f"prefetch.{key}: the next page is not on fhirServer and was not read: {_UNCHECKED}.")
            else:
                queries[key] = query
        results = reader.read_many(queries) if queries else {}
        pages = {}
        for key, result in results.items():
            if isinstance(result, FhirError):
                problems.append(
                    f"prefetch.{key}: page {page} of the results could not be read ({result.reason}): {_UNCHECKED}."
                )
            elif isinstance(result, dict) and result.get("resourceType") == "Bundle":
                found = resources_from_bundle(result)
                resources.extend(found)
                if next_url := _next_link(result):
                    pages[key] = next_url
            else:
                problems.append(f"prefetch.{key}: page {page} of the results is not a Bundle: {_UNCHECKED}.")
    return problems


def _fetched_resources(value: Any) -> list[Any] | None:
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        return resources_from_bundle(value)
    if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
        return [value]
    return None


def _medication_id(reference: Any) -> str | None:
    """"Medication/abc" (also absolute or versioned) -> "abc"; contained and other references -> None."""
    if not is_object(reference) or not isinstance(reference.get("reference"), str):
        return None
    target = split_reference(reference["reference"])
    return target[1] if target is not None and target[0] == "Medication" and target[1] else None


def _unresolved_medications(resources: list[Any]) -> list[str]:
    """Ids of Medications that orders and statements reference but that are neither contained nor sent."""
    present: set[Any] = set()
    referenced: list[str] = []
    for resource in resources:
        rtype = resource.get("resourceType") if is_object(resource) else None
        if rtype == "Medication":
            present.add(resource.get("id"))
        elif rtype in ("MedicationRequest", "MedicationStatement") and (
                rid := _medication_id(resource.get("medicationReference"))):
            referenced.append(rid)
    wanted: list[str] = []
    for rid in referenced:
        if rid not in present and rid not in wanted:
            wanted.append(rid)
    return wanted


def _read_medications(reader: _Reader, resources: list[Any]) -> list[str]:
    """Read referenced Medications with one ``Medication?_id=...`` search (templates keep to the
    spec's recommended query subset, without ``_include``); what cannot be read is named by the
    mapping that needed it."""
    wanted = _unresolved_medications(resources)
    if not wanted:
        return []
    ids = [i for i in wanted[:MAX_MEDICATION_IDS] if _safe_id(i)]
    problems = [] if len(ids) == len(wanted) else [
        f"{len(wanted) - len(ids)} referenced Medications were not read (more than {MAX_MEDICATION_IDS}, "
        "or ids that are not FHIR ids): their orders could not be checked for interactions."]
    if not ids:
        return problems
    query = f"Medication?_id={','.join(ids)}&_count={len(ids)}"
    result = reader.read_many({"medications": query})["medications"]
    if isinstance(result, FhirError):
        shown = ", ".join(ids[:_IDS_SHOWN]) + (", ..." if len(ids) > _IDS_SHOWN else "")
        return [*problems, f"the Medications that orders reference ({shown}) could not be read ({result.reason})."]
    found = _fetched_resources(result) or []
    resources.extend(r for r in found if isinstance(r, Mapping) and r.get("resourceType") == "Medication")
    return problems


def draft_medications(
    request: HookRequest,
    drafts: list[Any],
    client: FhirClient,
    *,
    allowed_servers: Sequence[str] = (),
    allow_http: bool = False,
    deadline: float | None = None,
) -> tuple[list[Any], list[str]]:
    """(Medications the draft orders reference by id, problem sentences), read from fhirServer with the same
    one batched search as the record's, and only when a draft references one that the draftOrders Bundle
    neither contains nor carries: without it, whether the draft orders ixabepilone cannot be told."""
    if not _unresolved_medications(drafts):
        return [], []
    base_url, _ = _server(request, allowed_servers, allow_http)
    if base_url is None:
        return [], []
    with client.waiting_slot() as slot:
        if not slot:
            return [], [f"the Medications that the draft orders reference were not read: {_ALL_BUSY}."]
        pool = list(drafts)
        problems = _read_medications(_Reader(client, base_url, request.access_token, deadline), pool)
    return pool[len(drafts):], problems


def _safe_id(value: str) -> bool:
    """A FHIR id (R4 datatype "id"): the only thing that may go into our query URL."""
    return FHIR_ID.fullmatch(value) is not None
