"""The JSON Schemas of cds_services/schemas hold the CDS Hooks 2.0 rules.

Valid examples (tests/fixtures/spec_examples, re-typed from the spec's own)
must pass; each invalid variant is a valid example with one thing broken, and
must fail for that thing: the error is asserted by keyword and location, so a
schema that rejects the document for some other reason does not pass.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from cds_services.schemas import SCHEMA_DIR, SCHEMA_FILES, load_schema, schema_errors, validator
from cds_services.schemas.openapi import COMPONENT_NAMES, SERVICES, build_openapi, render

EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "spec_examples"
SAMPLES = Path(__file__).resolve().parents[2] / "samples"

VALID_EXAMPLES = {
    "discovery_response.json": "discovery_response",
    "order_select_request.json": "service_request",
    "order_sign_request.json": "service_request",
    "service_response.json": "service_response",
    "service_response_empty.json": "service_response",
    "feedback_accepted.json": "feedback_request",
    "feedback_overridden.json": "feedback_request",
    "feedback_override_reason.json": "feedback_request",
}


def example(filename: str) -> Any:
    return json.loads((EXAMPLES / filename).read_text(encoding="utf-8"))


def leaf_errors(errors: Iterator[ValidationError]) -> Iterator[ValidationError]:
    """Errors with the oneOf/anyOf/allOf wrappers opened, so the real cause is visible."""
    for error in errors:
        if error.context:
            yield from leaf_errors(iter(error.context))
        else:
            yield error


def causes(name: str, document: Any) -> set[tuple[str, str]]:
    """(keyword, /path) of every leaf error."""
    return {
        (str(e.validator), "/" + "/".join(map(str, e.absolute_path)))
        for e in leaf_errors(validator(name).iter_errors(document))
    }


# --- the schemas themselves -------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_each_schema_is_a_valid_draft_2020_12_schema(name):
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_load_schema_accepts_file_names_and_returns_copies():
    first = load_schema("service_response.schema.json")
    first["required"].append("mutated")
    assert load_schema("service_response")["required"] == ["cards"]
    assert load_schema("openapi.json")["openapi"] == "3.1.0"
    assert validator("service_response") is validator("service_response")  # cached


def test_unknown_schema_name_and_openapi_validator_are_refused():
    with pytest.raises(KeyError, match="known: discovery_response"):
        load_schema("cards")
    with pytest.raises(ValueError, match="not a JSON Schema"):
        validator("openapi")


def test_schema_errors_names_the_path():
    document = example("service_response.json")
    document["cards"][0]["indicator"] = "error"
    assert schema_errors("service_response", document) == [
        "/cards/0/indicator: 'error' is not one of ['info', 'warning', 'critical']"
    ]


# --- valid examples ---------------------------------------------------------------

@pytest.mark.parametrize("filename,name", sorted(VALID_EXAMPLES.items()))
def test_spec_examples_validate(filename, name):
    assert schema_errors(name, example(filename)) == []


def test_sample_request_in_the_repository_validates():
    assert schema_errors("service_request", json.loads((SAMPLES / "order-sign-platelets-low.json").read_text())) == []


@pytest.mark.parametrize("length", [1, 138, 139])
def test_summary_up_to_139_characters_is_accepted(length):
    document = example("service_response.json")
    document["cards"][0]["summary"] = "x" * length
    assert schema_errors("service_response", document) == []


# --- invalid variants: (schema, example, mutation, expected (keyword, path)) ----------

def _set(path: list, value: Any) -> Callable[[Any], None]:
    def mutate(document: Any) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def _delete(path: list) -> Callable[[Any], None]:
    def mutate(document: Any) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return mutate


def _both(*mutations: Callable[[Any], None]) -> Callable[[Any], None]:
    def mutate(document: Any) -> None:
        for mutation in mutations:
            mutation(document)
    return mutate


RESPONSE = "service_response.json"
C0 = ["cards", 0]

INVALID = {
    # requirement 3 and the card attributes
    "summary-140-characters": ("service_response", RESPONSE, _set([*C0, "summary"], "x" * 140), ("maxLength", "/cards/0/summary")),
    "summary-empty": ("service_response", RESPONSE, _set([*C0, "summary"], ""), ("minLength", "/cards/0/summary")),
    "summary-blank": ("service_response", RESPONSE, _set([*C0, "summary"], "   "), ("pattern", "/cards/0/summary")),
    "summary-missing": ("service_response", RESPONSE, _delete([*C0, "summary"]), ("required", "/cards/0")),
    "indicator-error": ("service_response", RESPONSE, _set([*C0, "indicator"], "error"), ("enum", "/cards/0/indicator")),
    "detail-null": ("service_response", RESPONSE, _set([*C0, "detail"], None), ("type", "/cards/0/detail")),
    "uuid-null": ("service_response", RESPONSE, _set([*C0, "uuid"], None), ("type", "/cards/0/uuid")),
    "cards-missing": ("service_response", RESPONSE, _delete(["cards"]), ("required", "/")),
    "cards-null": ("service_response", RESPONSE, _set(["cards"], None), ("type", "/cards")),
    "unknown-card-member": ("service_response", RESPONSE, _set([*C0, "sumary"], "typo"), ("additionalProperties", "/cards/0")),
    "source-missing": ("service_response", RESPONSE, _delete([*C0, "source"]), ("required", "/cards/0")),
    "source-label-missing": ("service_response", RESPONSE, _delete([*C0, "source", "label"]), ("required", "/cards/0/source")),
    "source-url-relative": ("service_response", RESPONSE, _set([*C0, "source", "url"], "/dailymed"), ("pattern", "/cards/0/source/url")),
    "source-url-null": ("service_response", RESPONSE, _set([*C0, "source", "url"], None), ("type", "/cards/0/source/url")),
    "topic-without-code": ("service_response", RESPONSE, _delete([*C0, "source", "topic", "code"]), ("required", "/cards/0/source/topic")),
    "suggestions-without-selectionBehavior": ("service_response", RESPONSE, _delete([*C0, "selectionBehavior"]), ("required", "/cards/0")),
    "selectionBehavior-unknown": ("service_response", RESPONSE, _set([*C0, "selectionBehavior"], "exactly-one"), ("enum", "/cards/0/selectionBehavior")),
    "suggestions-empty": ("service_response", RESPONSE, _set([*C0, "suggestions"], []), ("minItems", "/cards/0/suggestions")),
    "two-recommended-with-at-most-one": (
        "service_response", RESPONSE, _set([*C0, "suggestions", 1, "isRecommended"], True), ("maxContains", "/cards/0/suggestions"),
    ),
    "isRecommended-string": ("service_response", RESPONSE, _set([*C0, "suggestions", 0, "isRecommended"], "true"), ("type", "/cards/0/suggestions/0/isRecommended")),
    "suggestion-label-missing": ("service_response", RESPONSE, _delete([*C0, "suggestions", 0, "label"]), ("required", "/cards/0/suggestions/0")),
    "actions-empty": ("service_response", RESPONSE, _set([*C0, "suggestions", 0, "actions"], []), ("minItems", "/cards/0/suggestions/0/actions")),
    "action-type-unknown": ("service_response", RESPONSE, _set([*C0, "suggestions", 0, "actions", 0, "type"], "remove"), ("enum", "/cards/0/suggestions/0/actions/0/type")),
    "action-description-missing": (
        "service_response", RESPONSE, _delete([*C0, "suggestions", 0, "actions", 0, "description"]), ("required", "/cards/0/suggestions/0/actions/0"),
    ),
    "delete-without-resourceId": (
        "service_response", RESPONSE, _delete([*C0, "suggestions", 0, "actions", 0, "resourceId"]), ("required", "/cards/0/suggestions/0/actions/0"),
    ),
    "create-without-resource": (
        "service_response", RESPONSE, _delete([*C0, "suggestions", 1, "actions", 0, "resource"]), ("required", "/cards/0/suggestions/1/actions/0"),
    ),
    "delete-id-as-resource-string": (
        "service_response", RESPONSE, _set([*C0, "suggestions", 0, "actions", 0, "resource"], "MedicationRequest/draft-ixa-8"),
        ("type", "/cards/0/suggestions/0/actions/0/resource"),
    ),
    "overrideReason-without-display": ("service_response", RESPONSE, _delete([*C0, "overrideReasons", 0, "display"]), ("required", "/cards/0/overrideReasons/0")),
    "overrideReasons-empty": ("service_response", RESPONSE, _set([*C0, "overrideReasons"], []), ("minItems", "/cards/0/overrideReasons")),
    "links-empty": ("service_response", RESPONSE, _set([*C0, "links"], []), ("minItems", "/cards/0/links")),
    "link-type-relative": ("service_response", RESPONSE, _set([*C0, "links", 0, "type"], "relative"), ("enum", "/cards/0/links/0/type")),
    "link-url-missing": ("service_response", RESPONSE, _delete([*C0, "links", 0, "url"]), ("required", "/cards/0/links/0")),
    "appContext-on-absolute-link": ("service_response", RESPONSE, _set([*C0, "links", 0, "appContext"], "{}"), ("not", "/cards/0/links/0")),
    "systemActions-empty": ("service_response", RESPONSE, _set(["systemActions"], []), ("minItems", "/systemActions")),
    "extension-empty": ("service_response", RESPONSE, _set([*C0, "extension"], {}), ("minProperties", "/cards/0/extension")),
    "extension-null-member": ("service_response", RESPONSE, _set([*C0, "extension"], {"org.example.x": None}), ("not", "/cards/0/extension/org.example.x")),
    "extension-unnamed-member": ("feedback_request", "feedback_overridden.json", _set(["extension"], {"": 1}), ("minLength", "/extension")),
    # discovery
    "service-description-missing": ("discovery_response", "discovery_response.json", _delete(["services", 0, "description"]), ("required", "/services/0")),
    "service-id-missing": ("discovery_response", "discovery_response.json", _delete(["services", 0, "id"]), ("required", "/services/0")),
    "service-id-with-slash": ("discovery_response", "discovery_response.json", _set(["services", 0, "id"], "ixabepilone/select"), ("pattern", "/services/0/id")),
    "service-title-null": ("discovery_response", "discovery_response.json", _set(["services", 0, "title"], None), ("type", "/services/0/title")),
    "prefetch-empty": ("discovery_response", "discovery_response.json", _set(["services", 0, "prefetch"], {}), ("minProperties", "/services/0/prefetch")),
    "prefetch-query-not-string": ("discovery_response", "discovery_response.json", _set(["services", 0, "prefetch", "patient"], {"read": "Patient"}), ("type", "/services/0/prefetch/patient")),
    "prefetch-token-nested": (
        "discovery_response", "discovery_response.json", _set(["services", 2, "prefetch"], {"x": "Patient/{{context.patient.id}}"}), ("pattern", "/services/2/prefetch/x"),
    ),
    "prefetch-token-draftOrders-on-order-sign": (
        "discovery_response", "discovery_response.json", _set(["services", 1, "prefetch", "orders"], "MedicationRequest?_id={{context.draftOrders}}"),
        ("pattern", "/services/1/prefetch/orders"),
    ),
    "prefetch-token-selections-on-order-select": (
        "discovery_response", "discovery_response.json", _set(["services", 0, "prefetch", "orders"], "MedicationRequest?_id={{context.selections}}"),
        ("pattern", "/services/0/prefetch/orders"),
    ),
    "usageRequirements-empty": ("discovery_response", "discovery_response.json", _set(["services", 2, "usageRequirements"], ""), ("minLength", "/services/2/usageRequirements")),
    # feedback
    "accepted-without-acceptedSuggestions": ("feedback_request", "feedback_accepted.json", _delete(["feedback", 0, "acceptedSuggestions"]), ("required", "/feedback/0")),
    "acceptedSuggestions-empty": ("feedback_request", "feedback_accepted.json", _set(["feedback", 0, "acceptedSuggestions"], []), ("minItems", "/feedback/0/acceptedSuggestions")),
    "acceptedSuggestion-without-id": ("feedback_request", "feedback_accepted.json", _set(["feedback", 0, "acceptedSuggestions"], [{}]), ("required", "/feedback/0/acceptedSuggestions/0")),
    "outcome-dismissed": ("feedback_request", "feedback_overridden.json", _set(["feedback", 0, "outcome"], "dismissed"), ("enum", "/feedback/0/outcome")),
    "card-missing": ("feedback_request", "feedback_overridden.json", _delete(["feedback", 0, "card"]), ("required", "/feedback/0")),
    "outcomeTimestamp-missing": ("feedback_request", "feedback_overridden.json", _delete(["feedback", 0, "outcomeTimestamp"]), ("required", "/feedback/0")),
    "outcomeTimestamp-without-zone": (
        "feedback_request", "feedback_overridden.json", _set(["feedback", 0, "outcomeTimestamp"], "2026-11-25T14:05:00"), ("pattern", "/feedback/0/outcomeTimestamp"),
    ),
    "outcomeTimestamp-date-only": (
        "feedback_request", "feedback_overridden.json", _set(["feedback", 0, "outcomeTimestamp"], "2026-11-25"), ("pattern", "/feedback/0/outcomeTimestamp"),
    ),
    "feedback-empty": ("feedback_request", "feedback_overridden.json", _set(["feedback"], []), ("minItems", "/feedback")),
    "overrideReason-empty": ("feedback_request", "feedback_override_reason.json", _set(["feedback", 0, "overrideReason"], {}), ("minProperties", "/feedback/0/overrideReason")),
    "reason-without-code": (
        "feedback_request", "feedback_override_reason.json", _delete(["feedback", 0, "overrideReason", "reason", "code"]), ("required", "/feedback/0/overrideReason/reason"),
    ),
    "userComment-null": ("feedback_request", "feedback_override_reason.json", _set(["feedback", 0, "overrideReason", "userComment"], None), ("type", "/feedback/0/overrideReason/userComment")),
    # service request
    "hookInstance-not-uuid": ("service_request", "order_select_request.json", _set(["hookInstance"], "call-42"), ("pattern", "/hookInstance")),
    "hook-other": ("service_request", "order_sign_request.json", _set(["hook"], "patient-view"), ("const", "/hook")),
    "context-missing": ("service_request", "order_sign_request.json", _delete(["context"]), ("required", "/")),
    "fhirAuthorization-without-fhirServer": ("service_request", "order_select_request.json", _delete(["fhirServer"]), ("required", "/")),
    "token_type-not-Bearer": ("service_request", "order_select_request.json", _set(["fhirAuthorization", "token_type"], "MAC"), ("const", "/fhirAuthorization/token_type")),
    "expires_in-missing": ("service_request", "order_select_request.json", _delete(["fhirAuthorization", "expires_in"]), ("required", "/fhirAuthorization")),
    "fhirServer-not-url": ("service_request", "order_select_request.json", _set(["fhirServer"], "ehr.example.org/fhir"), ("pattern", "/fhirServer")),
    "selections-missing-on-order-select": ("service_request", "order_select_request.json", _delete(["context", "selections"]), ("required", "/context")),
    "selections-empty": ("service_request", "order_select_request.json", _set(["context", "selections"], []), ("minItems", "/context/selections")),
    "selection-not-a-reference": ("service_request", "order_select_request.json", _set(["context", "selections"], ["draft-ixa-7"]), ("pattern", "/context/selections/0")),
    "userId-missing": ("service_request", "order_sign_request.json", _delete(["context", "userId"]), ("required", "/context")),
    "patientId-injection": ("service_request", "order_sign_request.json", _set(["context", "patientId"], "pt-4471&_include=*"), ("pattern", "/context/patientId")),
    "draftOrders-missing": ("service_request", "order_sign_request.json", _delete(["context", "draftOrders"]), ("required", "/context")),
    "draftOrders-not-bundle": ("service_request", "order_sign_request.json", _set(["context", "draftOrders", "resourceType"], "MedicationRequest"), ("const", "/context/draftOrders/resourceType")),
    "draftOrders-no-entries": ("service_request", "order_sign_request.json", _set(["context", "draftOrders", "entry"], []), ("minItems", "/context/draftOrders/entry")),
    "prefetch-value-string": ("service_request", "order_sign_request.json", _set(["prefetch", "allergies"], "none"), ("type", "/prefetch/allergies")),
    "prefetch-resource-without-type": ("service_request", "order_sign_request.json", _set(["prefetch", "allergies"], {"entry": []}), ("required", "/prefetch/allergies")),
    "encounterId-null": ("service_request", "order_select_request.json", _set(["context", "encounterId"], None), ("type", "/context/encounterId")),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_documents_are_rejected_for_the_right_reason(case):
    name, filename, mutate, expected = INVALID[case]
    document = example(filename)
    assert schema_errors(name, document) == [], "the starting example must be valid"
    mutate(document)
    found = causes(name, document)
    assert expected in found, f"expected {expected}, got {sorted(found)}"


def test_two_recommended_suggestions_are_fine_when_any_may_be_chosen():
    document = example(RESPONSE)
    document["cards"][0]["selectionBehavior"] = "any"
    document["cards"][0]["suggestions"][1]["isRecommended"] = True
    assert schema_errors("service_response", document) == []


def test_null_prefetch_value_means_no_data_and_is_allowed():
    document = example("order_sign_request.json")
    assert document["prefetch"]["allergies"] is None
    assert schema_errors("service_request", document) == []


def test_order_select_body_is_not_an_order_sign_body():
    """Without selections an order-select body fails, even though order-sign needs none."""
    document = example("order_select_request.json")
    del document["context"]["selections"]
    document["hook"] = "order-sign"
    assert schema_errors("service_request", document) == []
    document["hook"] = "order-select"
    assert schema_errors("service_request", document) != []


# --- the OpenAPI document -------------------------------------------------------

def openapi() -> dict[str, Any]:
    return load_schema("openapi")


def test_openapi_file_is_the_build_of_the_schemas():
    """openapi.json must not drift from the schema files: regenerate with
    ``python -m cds_services.schemas.openapi``."""
    committed = (SCHEMA_DIR / "openapi.json").read_text(encoding="utf-8")
    assert committed == render()
    assert openapi() == build_openapi()


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"external reference {ref}: the document must stand alone"
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_openapi_stands_alone_every_reference_resolves():
    document = openapi()
    refs = set(_refs(document))
    assert refs
    for ref in refs:
        _resolve(document, ref)


def test_openapi_component_schemas_are_valid_2020_12():
    for schema in openapi()["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_openapi_operations():
    document = openapi()
    paths = document["paths"]
    assert document["openapi"] == "3.1.0"
    assert set(paths["/cds-services"]) == {"get"}
    assert set(paths["/healthz"]) == {"get"}
    assert set(paths["/openapi.json"]) == {"get"}
    for open_path in ("/cds-services", "/healthz", "/openapi.json"):
        assert paths[open_path]["get"]["security"] == []
    assert SERVICES == {"ixabepilone-order-select": "order-select", "ixabepilone-order-sign": "order-sign"}
    for service_id, hook in SERVICES.items():
        call = paths[f"/cds-services/{service_id}"]["post"]
        feedback = paths[f"/cds-services/{service_id}/feedback"]["post"]
        for operation in (call, feedback):
            assert operation["security"] == [{"cdsHooksJwt": []}]
            assert operation["requestBody"]["required"] is True
            for code in ("400", "401", "413", "415", "422", "500"):
                outcome = _resolve(document, operation["responses"][code]["$ref"])
                assert outcome["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/OperationOutcome"}
        assert "412" in call["responses"]
        body = _resolve(document, call["requestBody"]["content"]["application/json"]["schema"]["$ref"])
        assert body["properties"]["hook"] == {"const": hook}
        assert call["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ServiceResponse"}
        assert feedback["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/FeedbackRequest"}
    for unknown in ("/cds-services/{id}", "/cds-services/{id}/feedback"):
        operation = paths[unknown]["post"]
        assert "404" in operation["responses"]
        assert operation["parameters"][0]["schema"]["not"]["enum"] == list(SERVICES)
    scheme = document["components"]["securitySchemes"]["cdsHooksJwt"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    assert "Allow" in document["components"]["responses"]["MethodNotAllowed"]["headers"]


def _openapi_validator(component: str) -> Draft202012Validator:
    """Validate against a component of openapi.json exactly as an OpenAPI 3.1 tool would."""
    document = openapi()
    registry = Registry().with_resource("urn:openapi", DRAFT202012.create_resource(document))
    return Draft202012Validator({"$ref": f"urn:openapi#/components/schemas/{component}"}, registry=registry)


@pytest.mark.parametrize("filename,name", sorted(VALID_EXAMPLES.items()))
def test_examples_validate_through_openapi_components_too(filename, name):
    assert list(_openapi_validator(COMPONENT_NAMES[name]).iter_errors(example(filename))) == []


@pytest.mark.parametrize("case", ["summary-140-characters", "suggestions-without-selectionBehavior",
                                  "accepted-without-acceptedSuggestions", "selections-missing-on-order-select"])
def test_invalid_documents_fail_through_openapi_components_too(case):
    name, filename, mutate, expected = INVALID[case]
    document = example(filename)
    mutate(document)
    found = {(e.validator, "/" + "/".join(map(str, e.absolute_path)))
             for e in leaf_errors(_openapi_validator(COMPONENT_NAMES[name]).iter_errors(document))}
    assert expected in found


@pytest.mark.parametrize("document,valid", [
    ({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found", "diagnostics": "no such service"}]}, True),
    ({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid", "diagnostics": "x", "expression": ["context.patientId"]}]}, True),
    ({"resourceType": "OperationOutcome", "issue": []}, False),
    ({"resourceType": "OperationOutcome", "issue": [{"severity": "bad", "code": "invalid", "diagnostics": "x"}]}, False),
    ({"resourceType": "Bundle", "issue": [{"severity": "error", "code": "invalid", "diagnostics": "x"}]}, False),
])
def test_operation_outcome_component(document, valid):
    assert (list(_openapi_validator("OperationOutcome").iter_errors(document)) == []) is valid


def test_openapi_passes_openapi_spec_validator():
    spec_validator = pytest.importorskip("openapi_spec_validator")
    spec_validator.validate(openapi())


# --- what the service really sends ------------------------------------------------

# Imported here, not at the top: the catalog pulls in fhir_mappings, and the
# schema tests above must not depend on it.

def test_openapi_documents_the_services_of_the_catalog():
    from cds_services.catalog import SERVICES as CATALOG

    assert {service.id: service.hook for service in CATALOG} == SERVICES


def test_discovery_document_of_the_service_validates():
    from cds_services.catalog import discovery_document

    document = discovery_document("2026.11", {"label": "https://dailymed.nlm.nih.gov/dailymed/"})
    assert schema_errors("discovery_response", document) == []
