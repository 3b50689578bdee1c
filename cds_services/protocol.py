"""Reading CDS Hooks requests: the JSON body and the hook request's fields.

Every way a request can be wrong gets its own sentence, naming the field, so
an integrator can fix the call from the error alone.
"""
from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import simdjson

from fhir_mappings.jsonlike import nested_deeper_than, to_python

from .catalog import ORDER_SELECT, Service
from .errors import BadRequest, UnsupportedMediaType


def read_json(content_type: str | None, data: bytes, max_depth: int, *, lazy: str | None = None) -> Any:
    """Decode a JSON request body, refusing other media types and deep nesting.

    With ``lazy`` (a top-level member, "prefetch" for hook calls), the objects
    under that member stay simdjson proxies: only what the checks touch is ever
    turned into Python (fhir_mappings.jsonlike), and the nesting limit applies
    to every part that is (the rest of the body now, each resource when it is
    read); the parser itself refuses nesting past 1024 levels.
    """
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    if mimetype != "application/json" and not (mimetype.startswith("application/") and mimetype.endswith("+json")):
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, got {mimetype or 'none'!r}"
        )
    # RFC 8259 §8.1: a parser MAY ignore a leading byte order mark; some .NET
    # clients send one, and refusing it refused their every call.
    data = data.removeprefix(_UTF8_BOM)
    if not data:
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        # simdjson (C) validates the whole body at several hundred MB/s and builds nothing until
        # asked. It refuses everything the path below refuses (invalid UTF-8, NaN and Infinity,
        # numbers beyond a double or 64-bit integers, lone surrogates, nesting past 1024); those
        # bodies take that path, which says exactly what is wrong and keeps big integers exact.
        document = simdjson.Parser().parse(data)
    except (ValueError, RuntimeError):
        value = _decode_exactly(data, max_depth)
        _check_depth(value, max_depth)
        return value
    if lazy is None or not isinstance(document, simdjson.Object):
        value = to_python(document)
        _check_depth(value, max_depth)
        return value
    try:
        # Iterating keys and [] keep nested objects lazy (items() would convert every value). A key
        # that [] cannot find again (simdjson compares escaped keys: "\u0000" in a key) makes the whole
        # body Python, as without ``lazy``.
        body = {key: to_python(document[key]) for key in document if key != lazy}
        kept = document.get(lazy)
        lazy_part = ({key: _lazy_object(kept[key]) for key in kept}
                     if isinstance(kept, simdjson.Object) else to_python(kept))
    except KeyError:
        value = to_python(document)
        _check_depth(value, max_depth)
        return value
    _check_depth(body, max_depth)
    if lazy in document:
        body[lazy] = lazy_part
        if isinstance(lazy_part, dict):  # what stays lazy is checked when it is read
            _check_depth({k: v for k, v in lazy_part.items() if not isinstance(v, simdjson.Object)}, max_depth - 1)
        else:
            _check_depth(lazy_part, max_depth - 1)
    return body


def _lazy_object(value: Any) -> Any:
    """A JSON object stays a simdjson proxy; anything else becomes Python."""
    return value if isinstance(value, simdjson.Object) else to_python(value)


def _decode_exactly(data: bytes, max_depth: int) -> Any:
    """The standard library's decoder, for bodies simdjson refuses: each fault gets its own sentence."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request body is not valid UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as error:
        raise BadRequest(
            f"malformed JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    except RecursionError:  # the C decoder's own guard against very deep nesting
        raise BadRequest(f"JSON nested deeper than {max_depth} levels") from None
    except ValueError:
        # int() refuses literals longer than sys.get_int_max_str_digits() (CVE-2020-10735 guard);
        # JSONDecodeError, also a ValueError, is caught above.
        raise BadRequest(
            f"a number in the request body has more than {sys.get_int_max_str_digits()} digits"
        ) from None
    if _SURROGATE_ESCAPE.search(text):
        _check_surrogates(value)
    return value


_UTF8_BOM = b"\xef\xbb\xbf"


def _refuse_constant(name: str) -> Any:
    """Python's decoder accepts NaN, Infinity and -Infinity; JSON does not (RFC 8259 §6).

    Let in, NaN compares false with every threshold, and either would be
    echoed back as invalid JSON in a suggestion that carries the draft order.
    """
    raise BadRequest(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    """A JSON number too large for a double (1e400) would become inf: refused like Infinity."""
    value = float(text)
    if math.isinf(value):
        raise BadRequest(f"the number {text[:40]} is too large")
    return value


# A \uD800-\uDFFF escape in the text; only then can a decoded string hold a lone surrogate
# (UTF-8 bytes of one are already refused by the strict decode). Escaped backslashes may
# match too: the walk below decides.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_surrogates(value: Any) -> None:
    """Refuse strings holding an unpaired UTF-16 surrogate (I-JSON, RFC 7493 §2.1).

    json.loads joins an escaped pair into one character, so any surrogate left
    is unpaired; such a string cannot be encoded as UTF-8, so storing or
    logging it failed (a 500 on feedback).
    """
    stack = [value]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is str:
            if _LONE_SURROGATE.search(node):
                raise BadRequest(
                    "a string in the request body holds an unpaired surrogate (a lone \\uD800-\\uDFFF escape)")
        elif kind is dict:
            stack.extend(node.keys())
            stack.extend(node.values())
        elif kind is list:
            stack.extend(node)


def _check_depth(value: Any, max_depth: int) -> None:
    """Reject nesting deeper than ``max_depth`` (iterative: no recursion to exhaust)."""
    if nested_deeper_than(value, max_depth):
        raise BadRequest(f"JSON nested deeper than {max_depth} levels")


FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # FHIR R4 datatype "id"
MAX_HOOK_INSTANCE = 128  # characters; it is logged on every audit line


@dataclass(frozen=True)
class HookRequest:
    hook: str
    hook_instance: str
    patient_id: str
    user_id: str
    draft_orders: Mapping[str, Any]
    selections: tuple[str, ...]  # order-select only; () for order-sign
    encounter_id: str | None = None
    fhir_server: str | None = None
    access_token: str | None = None
    token_patient: str | None = None
    prefetch: Mapping[str, Any] | None = None


def _require_string(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if value is None:
        raise BadRequest(f"{where}{key} is required", expression=[f"{where}{key}"])
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{where}{key} must be a non-empty string", expression=[f"{where}{key}"])
    return value


def _optional_string(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{where}{key} must be a non-empty string when present", expression=[f"{where}{key}"])
    return value


def parse_hook_request(body: Any, service: Service) -> HookRequest:
    """Validate a service call against the hook the service answers."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    hook = _require_string(body, "hook", "")
    if hook != service.hook:
        raise BadRequest(
            f"hook {hook!r} does not match service {service.id!r}, which answers {service.hook!r}",
            expression=["hook"],
        )
    hook_instance = _require_string(body, "hookInstance", "")
    # Spec 2.0: a UUID. Any short string is accepted (some test clients send other ids), but it is
    # logged on every audit line, so it stays short and printable.
    if len(hook_instance) > MAX_HOOK_INSTANCE or not hook_instance.isprintable():
        raise BadRequest("hookInstance must be a UUID (at most 128 printable characters)", expression=["hookInstance"])
    context = body.get("context")
    if not isinstance(context, dict):
        raise BadRequest("context is required and must be an object", expression=["context"])
    user_id = _require_string(context, "userId", "context.")
    patient_id = _require_string(context, "patientId", "context.")
    if not FHIR_ID.fullmatch(patient_id):
        # The id is placed into FHIR query URLs: only a FHIR id may go there.
        raise BadRequest("context.patientId must be a FHIR id (letters, digits, '-', '.'; at most 64)",
                         expression=["context.patientId"])
    encounter_id = _optional_string(context, "encounterId", "context.")

    draft_orders = context.get("draftOrders")
    if draft_orders is None:
        raise BadRequest("context.draftOrders is required (a FHIR Bundle)", expression=["context.draftOrders"])
    if not isinstance(draft_orders, dict):
        raise BadRequest("context.draftOrders must be a FHIR Bundle object", expression=["context.draftOrders"])
    # A browser client may fire before the order is complete: a Bundle with no
    # type or no entries is accepted (and yields no cards), another resource is not.
    if draft_orders.get("resourceType", "Bundle") != "Bundle":
        raise BadRequest(
            f"context.draftOrders must be a Bundle, got {draft_orders.get('resourceType')!r}",
            expression=["context.draftOrders"],
        )
    entries = draft_orders.get("entry", [])
    # One entry sent as an object (R4: a list) is read as a list of one, as every list we read is
    # (README, "Reading real-world FHIR"): a cosmetic defect must not switch every check off.
    if entries is not None and not isinstance(entries, (list, dict)):
        raise BadRequest("context.draftOrders.entry must be an array", expression=["context.draftOrders.entry"])

    selections: tuple[str, ...] = ()
    if hook == ORDER_SELECT:
        raw = context.get("selections")
        if raw is None:
            raise BadRequest("context.selections is required for order-select", expression=["context.selections"])
        if not isinstance(raw, list) or not all(isinstance(s, str) and s for s in raw):
            raise BadRequest(
                "context.selections must be an array of references such as 'MedicationRequest/123'",
                expression=["context.selections"],
            )
        selections = tuple(raw)

    fhir_server = _optional_string(body, "fhirServer", "")
    auth = body.get("fhirAuthorization")
    access_token = token_patient = None
    if auth is not None:
        if not isinstance(auth, dict):
            raise BadRequest("fhirAuthorization must be an object", expression=["fhirAuthorization"])
        if fhir_server is None:
            raise BadRequest("fhirAuthorization was sent without fhirServer", expression=["fhirServer"])
        access_token = _require_string(auth, "access_token", "fhirAuthorization.")
        token_type = auth.get("token_type", "Bearer")
        # OAuth token types are case-insensitive (RFC 6749 §5.1, "token_type ... Value is case
        # insensitive"); clients send "bearer" as often as "Bearer".
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise BadRequest("fhirAuthorization.token_type must be 'Bearer'",
                             expression=["fhirAuthorization.token_type"])
        token_patient = _optional_string(auth, "patient", "fhirAuthorization.")
        if token_patient is not None and token_patient != patient_id:
            raise BadRequest(
                "fhirAuthorization.patient does not match context.patientId; "
                "the access token is for another patient",
                expression=["fhirAuthorization.patient"],
            )

    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        raise BadRequest("prefetch must be an object of prefetch keys", expression=["prefetch"])

    return HookRequest(
        hook=hook,
        hook_instance=hook_instance,
        patient_id=patient_id,
        user_id=user_id,
        encounter_id=encounter_id,
        draft_orders=draft_orders,
        selections=selections,
        fhir_server=fhir_server.rstrip("/") if fhir_server else None,
        access_token=access_token,
        token_patient=token_patient,
        prefetch=prefetch,
    )
