"""Tolerant reading: validate the elements the checks read, one by one, and nothing else.

Real clients send resources that are not valid R4 in places no check looks at
(the CDS Hooks sandbox sends ``MedicationRequest.category`` as one object; the
hook page's own example sends ``doseAndRate`` as one object). Validating whole
resources turned such a cosmetic defect into "order unreadable" and switched
every check off. Here each resource type has the list of elements the
mappings read (:data:`READ_ELEMENTS`, documented in the README); each present
element is validated on its own with its ``fhir.resources`` R4B type, and the
resource is assembled from the valid ones. So:

- an element no check reads is never looked at, whatever its shape;
- a list element sent as one object (``"doseAndRate": {...}``) is read as a
  list of one, at any depth: nothing is lost and nothing is guessed;
- an element that is still invalid is left out and named, with the reason,
  in :func:`unreadable_elements`, so the check that needs it (and only that
  check) can say "cannot verify".

Models are built with ``model_construct`` from validated elements: resource-level
rules (required ``intent``, ``subject``) are not enforced, because a missing
element that no check reads must not stop a check either.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import cache, lru_cache
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource
from pydantic import TypeAdapter, ValidationError

__all__ = ["READ_ELEMENTS", "model_class", "read_resource", "source_json", "unreadable_elements"]

# Per resource type, the elements fhir_mappings reads. Everything else is passed over unread.
READ_ELEMENTS: dict[str, tuple[str, ...]] = {
    "Patient": ("id", "birthDate", "gender"),
    "MedicationRequest": (
        "id", "status", "intent", "doNotPerform", "subject", "medicationCodeableConcept",
        "medicationReference", "authoredOn", "dosageInstruction", "dispenseRequest", "contained",
    ),
    "MedicationStatement": (
        "id", "status", "subject", "medicationCodeableConcept", "medicationReference",
        "effectiveDateTime", "effectivePeriod", "dateAsserted", "dosage", "contained",
    ),
    "Medication": ("id", "code", "form", "ingredient"),
    "Observation": (
        "id", "status", "subject", "code", "effectiveDateTime", "effectivePeriod", "effectiveInstant",
        "issued", "valueQuantity", "valueString", "valueCodeableConcept", "dataAbsentReason", "referenceRange",
    ),
    "Condition": (
        "id", "subject", "clinicalStatus", "verificationStatus", "code", "onsetDateTime", "onsetPeriod",
        "recordedDate", "abatementDateTime", "abatementPeriod", "abatementAge", "abatementRange", "abatementString",
    ),
    "AllergyIntolerance": (
        "id", "patient", "clinicalStatus", "verificationStatus", "code", "criticality", "reaction",
        "onsetDateTime", "recordedDate",
    ),
    "Procedure": ("id", "subject", "status", "code", "performedDateTime", "performedPeriod"),
    "Immunization": ("id", "patient", "status", "vaccineCode", "occurrenceDateTime"),
}

_MAX_REPAIRS = 16  # list-for-object repairs per element; more means the element is not what we think
_PRIVATE = "ixa_read"  # key in pydantic's per-instance private storage (never serialised by model_dump)


@cache
def model_class(resource_type: str) -> type[Resource] | None:
    """The R4B model class of a resource type, or None when it is not one."""
    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError):  # fhir.resources raises ValueError for unknown types
        return None
    return model if issubclass(model, Resource) else None  # datatypes (Quantity, ...) are not resources


@cache
def _blank(resource_type: str) -> dict[str, Any]:
    """Every field of the model with its default; fields without one (required in R4) are None:
    a required element that is missing is as absent as an optional one. Computed once per type:
    pydantic's ``model_construct`` works this out on every call, a fifth of a resource's cost."""
    model = model_class(resource_type)
    assert model is not None
    fields = dict(model.model_construct().__dict__)
    return {name: fields.get(name) for name in model.model_fields}


def _build(model: type[Resource], resource_type: str, values: dict[str, Any], private: Any) -> Resource:
    """What ``model.model_construct(**values)`` builds (no validation: every value was validated
    on its own), without recomputing the defaults of some fifty fields each time."""
    resource = model.__new__(model)
    fields = dict(_blank(resource_type))
    fields.update(values)
    object.__setattr__(resource, "__dict__", fields)
    object.__setattr__(resource, "__pydantic_fields_set__", set(values))
    object.__setattr__(resource, "__pydantic_extra__", None)
    object.__setattr__(resource, "__pydantic_private__", {_PRIVATE: private})
    return resource


@cache
def _adapter(resource_type: str, element: str) -> TypeAdapter[Any]:
    model = model_class(resource_type)
    assert model is not None
    annotation = model.model_fields[element].annotation
    assert annotation is not None  # every R4B field is annotated
    return TypeAdapter(annotation)


def short_text(text: str, limit: int = 80) -> str:
    """One line of at most ``limit`` characters, for a problem sentence that quotes what was sent."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _wrap_at(value: Any, loc: tuple[Any, ...]) -> Any:
    """``value`` with the object at ``loc`` put in a list of one."""
    if not loc:
        return [value]
    node = value
    for step in loc[:-1]:
        node = node[step]
    node[loc[-1]] = [node[loc[-1]]]
    return value


def _validate(resource_type: str, element: str, value: Any) -> tuple[Any, Any, str | None]:
    """(validated value, the JSON it was read from, None) or (None, None, why it is unreadable)."""
    adapter = _adapter(resource_type, element)
    original = value
    for _ in range(_MAX_REPAIRS):
        try:
            return adapter.validate_python(value), value, None
        except ValidationError as error:
            errors = error.errors()
            singles = [e["loc"] for e in errors if e["type"] == "list_type" and isinstance(e.get("input"), Mapping)]
            if not singles:
                first: Mapping[str, Any] = errors[0] if errors else {}
                where = ".".join(str(p) for p in (element, *first.get("loc", ())))
                more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
                why = short_text(first.get("msg", "invalid")).rstrip(".")
                return None, None, f"{short_text(where, 60)}: {why}{more}"
            if value is original:
                value = copy.deepcopy(original)
            value = _wrap_at(value, tuple(singles[0]))
        except (TypeError, RecursionError) as error:
            return None, None, f"{element}: {type(error).__name__}"
    return None, None, f"{element}: too many objects where lists were expected"


class _Keyed:
    """An element's JSON, hashed and compared by its canonical text (sorted keys)."""

    __slots__ = ("key", "value")

    def __init__(self, key: Any, value: Any) -> None:
        self.key, self.value = key, value

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Keyed) and self.key == other.key


# Validated elements are kept, per resource type and element, keyed by their JSON: the same code,
# unit, reference range, status or patient reference recurs across the results of a record, across
# the calls of one encounter (order-select, then order-sign) and across patients, and validating it
# is most of the cost of reading. Bounded, so memory stays flat; a value is never shared mutably
# (nothing downstream changes a model).
_VALIDATED = 16384


@lru_cache(maxsize=_VALIDATED)
def _validated(resource_type: str, element: str, keyed: _Keyed) -> tuple[Any, Any, str | None]:
    return _validate(resource_type, element, keyed.value)


def _read_element(resource_type: str, element: str, value: Any) -> tuple[Any, Any, str | None]:
    """:func:`_validate`, remembered for JSON already seen."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        key: Any = (type(value), value)
    else:
        try:
            key = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except (TypeError, orjson.JSONEncodeError):  # e.g. an integer beyond 64 bits: not remembered
            return _validate(resource_type, element, value)
    return _validated(resource_type, element, _Keyed(key, value))


def read_resource(raw: Mapping[str, Any]) -> Resource | None:
    """The R4B model of ``raw`` built from the elements the mappings read, or None when
    ``raw`` is not a resource type we read. Elements that could not be read are left
    out and listed by :func:`unreadable_elements`."""
    resource_type = raw.get("resourceType")
    if not isinstance(resource_type, str):
        return None
    elements = READ_ELEMENTS.get(resource_type)
    model = model_class(resource_type) if elements else None
    if elements is None or model is None:
        return None
    values: dict[str, Any] = {}
    unreadable: dict[str, str] = {}
    read_json: dict[str, Any] = {}
    for element in elements:
        if element not in raw:
            continue
        if element == "contained":
            values[element] = _contained(raw[element], unreadable)
            continue
        value, as_read, problem = _read_element(resource_type, element, raw[element])
        if problem is not None:
            unreadable[element] = problem
        elif value is not None:
            values[element] = value
            read_json[element] = as_read
    return _build(model, resource_type, values, (unreadable, raw, read_json))


def _contained(items: Any, unreadable: dict[str, str]) -> list[Resource]:
    """Contained resources (Medications) read the same way; one that cannot be read is named."""
    out: list[Resource] = []
    for i, item in enumerate(items if isinstance(items, list) else [items]):
        resource = read_resource(item) if isinstance(item, Mapping) else None
        if resource is not None:
            out.append(resource)
            for why in unreadable_elements(resource).values():
                unreadable.setdefault("contained", f"contained[{i}].{why}")
        elif isinstance(item, Mapping) and item.get("resourceType") in READ_ELEMENTS:
            unreadable.setdefault("contained", f"contained[{i}] could not be read")
    return out


def _private(resource: Any) -> tuple[dict[str, str], Mapping[str, Any] | None, dict[str, Any]]:
    stored = getattr(resource, "__pydantic_private__", None) or {}
    found: tuple[dict[str, str], Mapping[str, Any] | None, dict[str, Any]] = stored.get(_PRIVATE, ({}, None, {}))
    return found


def unreadable_elements(resource: Any) -> Mapping[str, str]:
    """Elements of ``resource`` present in the JSON but not readable as R4, with why."""
    return _private(resource)[0]


def source_json(resource: Any) -> dict[str, Any] | None:
    """The resource as it was sent, with the elements we read in the shape we read them
    (a single object where R4 wants a list becomes a list of one); elements we do not read
    are kept exactly as sent. For echoing a draft order back in a suggestion: shared with the
    request, so a caller that changes it copies it first (rules.common.with_dose does)."""
    _, raw, read_json = _private(resource)
    if raw is None:
        return None
    return {**raw, **read_json}
