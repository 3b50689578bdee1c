"""Prefetched data first, the EHR's FHIR server for the rest.

Spec 2.0 §prefetch: a key that is absent, or that carries an OperationOutcome
instead of data, was not prefetched and is fetched from ``fhirServer``; a key
whose value is ``null`` means the EHR looked and found nothing. If a needed
key can be had neither way the service answers 412 (requirement 54).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fhir_mappings.resources import resources_from_bundle

from .errors import BadRequest, PreconditionFailed
from .fhir_client import FhirClient, FhirError
from .protocol import HookRequest
from .security.fhir_access import FhirServerNotAllowed, check_fhir_server

log = logging.getLogger(__name__)


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


def gather(
    request: HookRequest,
    templates: Mapping[str, str],
    client: FhirClient,
    allowed_servers: Sequence[str] = (),
    allow_http: bool = False,
) -> tuple[list[Any], list[str]]:
    """All raw resources for the checks, and the keys that had to be fetched."""
    prefetch = request.prefetch or {}
    resources: list[Any] = []
    missing: dict[str, str] = {}
    for key, template in templates.items():
        found = _resources_of(key, prefetch[key]) if key in prefetch else None
        if found is None:
            missing[key] = render(template, request)
        else:
            resources.extend(found)
    if not missing:
        return resources, []
    if not request.fhir_server:
        raise PreconditionFailed(
            "the checks need prefetch keys that were not sent ("
            + ", ".join(sorted(missing))
            + ") and the request has no fhirServer to read them from",
            expression=[f"prefetch.{key}" for key in sorted(missing)],
        )
    try:
        base_url = check_fhir_server(request.fhir_server, allowed_servers, allow_http)
    except FhirServerNotAllowed as refusal:
        # fhirServer is caller-controlled: nothing is sent to a server we do not list.
        log.warning("fhirServer refused: %s", refusal.reason)
        raise PreconditionFailed(
            "the checks need prefetch keys that were not sent ("
            + ", ".join(sorted(missing))
            + ") and fhirServer is not a FHIR server this service is configured to call",
            expression=["fhirServer"],
        ) from None
    results = client.read_many(base_url, missing, request.access_token)
    failures = {key: result for key, result in results.items() if isinstance(result, FhirError)}
    if failures:
        raise PreconditionFailed(
            "could not read the data the checks need from the FHIR server: "
            + "; ".join(f"{key}: {failures[key].reason}" for key in sorted(failures)),
            expression=[f"prefetch.{key}" for key in sorted(failures)],
        )
    for key in missing:
        found = _fetched_resources(key, results[key])
        resources.extend(found)
    return resources, sorted(missing)


def _fetched_resources(key: str, value: Any) -> list[Any]:
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        return resources_from_bundle(value)
    if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
        return [value]
    raise PreconditionFailed(f"the FHIR server's answer for {key} is not a FHIR resource")
