"""JSON Schemas of the contracts: one standalone schema per model, and a shared component set.

The models are every pydantic model that `shared.contracts` exports publicly (DTOs, queue
messages, results, events and their bases), plus every message type the queue registry
allows on a queue, plus the two unions `WorkerCommand` and `WorkerResponse`. Schemas are
pydantic's, in validation mode: they describe what a consumer accepts.

One deliberate change to pydantic's output: the unions come out as `anyOf`, not `oneOf`.
Our parsers pick a member by `command`, and by the keys a payload holds when `command` is
absent; a payload without `command` can fit several members at once (unknown fields are
ignored), which `oneOf` would reject although the parser accepts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaValue

import shared.contracts as contracts
from shared.exports.errors import DanglingReferenceError, NameCollisionError
from shared.registry import QUEUES

__all__ = [
    "COMPONENT_REF_TEMPLATE",
    "JSON_SCHEMA_DIALECT",
    "component_schemas",
    "contract_models",
    "contract_unions",
    "schema_documents",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
"""The dialect pydantic generates; stated in every standalone schema file."""

COMPONENT_REF_TEMPLATE = "#/components/schemas/{model}"
"""Where references point inside the AsyncAPI document."""


def contract_models() -> dict[str, type[BaseModel]]:
    """Every public model of `shared.contracts` and of the registry, by class name, sorted."""
    found: dict[str, type[BaseModel]] = {}
    candidates: list[object] = [getattr(contracts, name) for name in contracts.__all__]
    candidates.extend(message_type for spec in QUEUES for message_type in spec.message_types)
    for candidate in candidates:
        if not (isinstance(candidate, type) and issubclass(candidate, BaseModel)):
            continue
        known = found.setdefault(candidate.__name__, candidate)
        if known is not candidate:
            raise NameCollisionError(
                f"two contract models are named {candidate.__name__!r}: "
                f"{known.__module__} and {candidate.__module__}"
            )
    return dict(sorted(found.items()))


def contract_unions() -> dict[str, TypeAdapter[Any]]:
    """The message unions of the contracts, by name: `WorkerCommand`, `WorkerResponse`."""
    return {
        "WorkerCommand": contracts.WorkerCommandAdapter,
        "WorkerResponse": contracts.WorkerResponseAdapter,
    }


def _union_as_any_of(schema: JsonSchemaValue, name: str) -> JsonSchemaValue:
    """Pydantic's union schema with `oneOf` turned into `anyOf` (see the module docstring)."""
    result = dict(schema)
    members = result.pop("oneOf", None)
    if members is not None:
        result["anyOf"] = members
    result.setdefault("title", name)
    result.setdefault(
        "description",
        "A member is chosen by `command`; without it, by the keys the payload holds.",
    )
    return result


def schema_documents() -> dict[str, JsonSchemaValue]:
    """One standalone JSON Schema (with its own `$defs`) per model and per union, by name."""
    documents: dict[str, JsonSchemaValue] = {}
    for name, model in contract_models().items():
        documents[name] = {"$schema": JSON_SCHEMA_DIALECT, **model.model_json_schema()}
    for name, adapter in contract_unions().items():
        if name in documents:
            raise NameCollisionError(f"the union {name!r} has the name of a model")
        union = _union_as_any_of(adapter.json_schema(), name)
        documents[name] = {"$schema": JSON_SCHEMA_DIALECT, **union}
    return dict(sorted(documents.items()))


def component_schemas() -> dict[str, JsonSchemaValue]:
    """Every model, union and nested type as one flat map, referenced as components."""
    inputs: list[tuple[str, Any, TypeAdapter[Any]]] = [
        (name, "validation", TypeAdapter(model)) for name, model in contract_models().items()
    ]
    unions = contract_unions()
    inputs.extend((name, "validation", adapter) for name, adapter in unions.items())
    by_input, shared_defs = TypeAdapter.json_schemas(inputs, ref_template=COMPONENT_REF_TEMPLATE)
    components: dict[str, JsonSchemaValue] = dict(shared_defs.get("$defs", {}))
    for (name, _mode), schema in by_input.items():
        if name not in unions:
            continue  # models are in $defs already; their entry here is only a $ref
        if name in components:
            raise NameCollisionError(f"the union {name!r} has the name of a nested type")
        components[name] = _union_as_any_of(schema, name)
    _check_refs(components, components)
    return dict(sorted(components.items()))


def _check_refs(node: object, components: Mapping[str, object]) -> None:
    """Raise `DanglingReferenceError` if a `$ref` points at no component."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            prefix = COMPONENT_REF_TEMPLATE.format(model="")
            if not ref.startswith(prefix) or ref[len(prefix) :] not in components:
                raise DanglingReferenceError(f"reference {ref!r} points at no component schema")
        for value in node.values():
            _check_refs(value, components)
    elif isinstance(node, list):
        for value in node:
            _check_refs(value, components)
