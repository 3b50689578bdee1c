"""Raw FHIR JSON to R4B models, one resource at a time.

One bad resource must not sink the rest, and another patient's resource must
never be mixed in: both are dropped and reported in words.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

Resource = Any


def resources_from_bundle(bundle: Mapping[str, Any]) -> list[Any]:
    """The resources of a Bundle's entries; search-outcome entries are skipped."""
    entries = bundle.get("entry") if isinstance(bundle, Mapping) else None
    if not isinstance(entries, list):
        return []
    out = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        search = entry.get("search")
        if isinstance(search, Mapping) and search.get("mode") == "outcome":
            continue
        if "resource" in entry:
            out.append(entry["resource"])
    return out


def _label(raw: Mapping[str, Any]) -> str:
    rtype = raw.get("resourceType")
    rid = raw.get("id")
    return f"{rtype if isinstance(rtype, str) else 'resource'}/{rid if isinstance(rid, str) else '(no id)'}"


def parse_resource(raw: Any) -> tuple[Resource | None, str | None]:
    if not isinstance(raw, Mapping):
        return None, "a prefetch entry is not a JSON object"
    rtype = raw.get("resourceType")
    if not isinstance(rtype, str):
        return None, f"{_label(raw)}: no resourceType"
    try:
        model = get_fhir_model_class(rtype)
    except KeyError:
        return None, f"{_label(raw)}: unknown resource type"
    try:
        return model.model_validate(dict(raw)), None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return None, f"{_label(raw)}: not valid FHIR R4 ({where}: {first.get('msg', 'invalid')[:80]})"
    except (ValueError, TypeError, RecursionError):
        return None, f"{_label(raw)}: not valid FHIR R4"


def _patient_ref(resource: Resource) -> str | None:
    for attr in ("subject", "patient"):
        ref = getattr(resource, attr, None)
        if ref is not None and getattr(ref, "reference", None):
            return ref.reference
    return None


def parse_resources(raws: Iterable[Any], patient_id: str) -> tuple[list[Resource], list[str]]:
    parsed: list[Resource] = []
    problems: list[str] = []
    seen: set[str] = set()
    own = {f"Patient/{patient_id}", patient_id}
    for raw in raws:
        resource, problem = parse_resource(raw)
        if resource is None:
            problems.append(problem or "unreadable resource")
            continue
        rtype = resource.get_resource_type()
        key = f"{rtype}/{resource.id}" if resource.id else None
        if key and key in seen:
            continue
        if rtype == "OperationOutcome":
            text = "; ".join(i.diagnostics or i.code for i in resource.issue or [])
            problems.append(f"the EHR reported a problem: {text[:200]}")
            continue
        if rtype == "Patient" and resource.id and resource.id != patient_id:
            problems.append(f"{key} ignored: not the patient in context")
            continue
        ref = _patient_ref(resource)
        if ref is not None and not any(ref == o or ref.endswith("/" + f"Patient/{patient_id}") for o in own):
            problems.append(f"{key or rtype} ignored: it belongs to another patient")
            continue
        if key:
            seen.add(key)
        parsed.append(resource)
    return parsed, problems
