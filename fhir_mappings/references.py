"""FHIR references, read one way everywhere.

A record names a resource as "Type/id"; a reference to one may be relative
("Medication/m1"), absolute ("https://ehr.example/fhir/Medication/m1") or
versioned ("Medication/m1/_history/2") [FHIR R4 §2.1.0.13 References]. Every
place that needs the type and id of a reference, or the "Type/id" of a
parsed resource, reads it here so that the forms are handled alike.
"""
from __future__ import annotations

from typing import Any

__all__ = ["reference_of", "split_reference"]

_TYPE_AND_ID = 2  # a literal reference ends in "Type/id"


def reference_of(resource: Any) -> str | None:
    """"MedicationRequest/123" for a parsed resource, or None when it has no id."""
    rid = getattr(resource, "id", None)
    return f"{resource.get_resource_type()}/{rid}" if rid else None


def split_reference(reference: str) -> tuple[str, str] | None:
    """(type, id) of a relative, absolute or versioned literal reference; None when it has no "Type/id".

    Contained ("#x") and "urn:uuid:" references have no type to read: callers
    that may meet them decide what they mean before asking.
    """
    parts = reference.split("/_history/", maxsplit=1)[0].rstrip("/").split("/")
    if len(parts) < _TYPE_AND_ID:
        return None
    return parts[-2], parts[-1]
