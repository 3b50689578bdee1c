"""JSON values as the reading path meets them: plain Python, or simdjson's lazy proxies.

A hook call's prefetch can hold thousands of resources of which the checks
read a few dozen (the newest result per analyte, the medications of interest).
The request body is parsed with simdjson (cds_services/protocol.py), which
builds Python objects only for what is touched: the raw pre-filters read a
resource's type, status and codes through the proxy, and only a resource that
is read is turned into Python (:func:`to_python`). These helpers are the one
place that knows both shapes; the checks that pass them are plain
``isinstance`` tests against concrete types (no ABC machinery on the hot path).
"""
from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

import simdjson

# Typed as the protocols the proxies implement, so ``isinstance`` narrows for mypy as it does for dict and list.
OBJECT_TYPES: tuple[type[Mapping[str, Any]], ...] = (dict, simdjson.Object)
ARRAY_TYPES: tuple[type[Sequence[Any]], ...] = (list, simdjson.Array)


def is_object(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """A JSON object, as a dict or a simdjson proxy."""
    return isinstance(value, OBJECT_TYPES)


def is_array(value: Any) -> TypeGuard[Sequence[Any]]:
    """A JSON array, as a list or a simdjson proxy."""
    return isinstance(value, ARRAY_TYPES)


def to_python(value: Any) -> Any:
    """``value`` as plain dicts and lists (a proxy is converted, in C; Python values are returned as they are)."""
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def nested_deeper_than(value: Any, max_depth: int) -> bool:
    """Is Python ``value`` nested deeper than ``max_depth`` containers? Iterative, in C.

    Level by level: ``gc.get_referents`` hands back the keys and values of every
    dict and the items of every list of a level in one call, and a string or a
    number has no referents, so a level of leaves ends the walk by itself. Only
    a level past ``max_depth`` is looked at in Python, to tell a container from
    a leaf.
    """
    level = [value]
    for _ in range(max_depth):
        level = gc.get_referents(*level)
        if not level:
            return False
    return any(node.__class__ is dict or node.__class__ is list for node in level)
