"""The AsyncAPI 3.0 document of every queue of the registry.

Built from `shared.registry.QUEUES` alone, so the document cannot drift from the code:

- one channel per queue, whose `address` is the stream name; a pattern such as
  `worker:{id}:input` is an address expression whose placeholders are declared under
  `parameters`;
- one message per message type, whose payload references the type's schema under
  `components/schemas` (pydantic's JSON Schema, see `shared.exports.schemas`);
- per queue, a `send` operation for each writer and a `receive` operation for the consumer
  (and for each observer), named `<actor>.<action>.<channel id>`;
- the registry's extras as `x-` extensions: the queue kind, the consumer groups that must
  acknowledge an entry, and the queue's dead-letter stream.

Dead-letter streams are named `{<queue>}:dlq` (a Redis hash tag, see `shared.registry`). The
braces of a hash tag collide with AsyncAPI's address expressions, so dead-letter streams are
not channels of their own: each channel names its own in `x-dead-letter-stream`.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from pydantic import BaseModel

from shared.contracts import QueueMeta
from shared.exports.errors import DanglingReferenceError, InvalidNameError, NameCollisionError
from shared.exports.schemas import component_schemas
from shared.registry import QUEUES, Actor, QueueSpec, dead_letter_stream, message_type_name

__all__ = ["ASYNCAPI_VERSION", "build_asyncapi", "channel_id", "operation_id"]

ASYNCAPI_VERSION = "3.0.0"
CONTENT_TYPE = "application/json"
_ID_CHARS = re.compile(r"^[A-Za-z0-9_.\-]+$")

_KIND_DESCRIPTIONS: dict[str, str] = {
    "queue": "A work queue: one logical writer, one consuming actor (plus optional observers).",
    "progress": "A per-task progress stream of ProgressEvent.",
    "result": "A result stream: BaseResult subclasses sent to a message's callback_stream.",
}


def channel_id(queue_name: str) -> str:
    """The channel's key in the document: `worker:{id}:input` → `worker.id.input`."""
    ident = queue_name.replace("{", "").replace("}", "").replace(":", ".")
    if not _ID_CHARS.match(ident):
        raise InvalidNameError(f"queue {queue_name!r} gives no valid channel id ({ident!r})")
    return ident


def operation_id(actor: Actor, action: str, queue_name: str) -> str:
    """The operation's key: `langgraph.receive.engineering.queue`."""
    return f"{actor.value}.{action}.{channel_id(queue_name)}"


def _summary(model: type[BaseModel]) -> str:
    """The first line of a model's docstring (its name when it has none)."""
    doc = inspect.getdoc(model) or model.__name__
    return doc.splitlines()[0]


def _channel(spec: QueueSpec) -> dict[str, Any]:
    """The channel object of one queue."""
    writers = ", ".join(writer.value for writer in spec.writers)
    channel: dict[str, Any] = {
        "address": spec.name,
        "title": spec.name,
        "summary": spec.purpose,
        "description": (
            f"Written by {writers}; consumed by {spec.consumer.value} "
            f"(consumer group `{spec.consumer_group}`). "
            f"Dead letters go to `{dead_letter_stream(spec.name)}`."
        ),
        "messages": {
            message_type_name(message_type): {
                "$ref": f"#/components/messages/{message_type_name(message_type)}"
            }
            for message_type in spec.message_types
        },
        "tags": [{"name": spec.kind}],
        "x-kind": spec.kind,
        "x-consumer-groups": list(spec.groups),
        "x-dead-letter-stream": dead_letter_stream(spec.name),
    }
    if spec.parameters:
        channel["parameters"] = {
            parameter: {
                "description": f"The `{parameter}` part of the stream name `{spec.name}`.",
            }
            for parameter in spec.parameters
        }
    return channel


def _operation(spec: QueueSpec, actor: Actor, action: str, role: str) -> dict[str, Any]:
    """One send or receive operation of an actor on a queue."""
    ident = channel_id(spec.name)
    verb = "writes to" if action == "send" else "reads from"
    operation: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{ident}"},
        "messages": [
            {"$ref": f"#/channels/{ident}/messages/{message_type_name(message_type)}"}
            for message_type in spec.message_types
        ],
        "summary": f"{actor.value} {verb} {spec.name} ({role}).",
        "tags": [{"name": actor.value}],
        "x-actor": actor.value,
        "x-role": role,
    }
    if action == "receive":
        operation["x-consumer-group"] = actor.value
    return operation


def _operations(spec: QueueSpec) -> dict[str, dict[str, Any]]:
    """Every operation on one queue: writers send, the consumer and observers receive."""
    roles: list[tuple[Actor, str, str]] = [(writer, "send", "writer") for writer in spec.writers]
    roles.append((spec.consumer, "receive", "consumer"))
    roles.extend((observer, "receive", "observer") for observer in spec.observers)
    operations: dict[str, dict[str, Any]] = {}
    for actor, action, role in roles:
        key = operation_id(actor, action, spec.name)
        if key in operations:
            raise NameCollisionError(f"operation {key!r} is declared twice")
        operations[key] = _operation(spec, actor, action, role)
    return operations


def _message(model: type[BaseModel]) -> dict[str, Any]:
    """The message object of one message type."""
    name = message_type_name(model)
    return {
        "name": name,
        "title": name,
        "summary": _summary(model),
        "contentType": CONTENT_TYPE,
        "payload": {"$ref": f"#/components/schemas/{name}"},
    }


def _description() -> str:
    """The document's description: how to read the channels."""
    example = QUEUES[0].name
    return (
        "Every Redis stream of the codegen orchestrator, generated from `shared.registry` "
        "(run `make export`; do not edit by hand). Payloads are JSON, validated by the "
        "pydantic models of `shared.contracts`. Each queue is read by consumer groups named "
        "after the actors (`x-consumer-groups`); an entry that cannot be handled moves to "
        f"the queue's dead-letter stream, `{dead_letter_stream(example)}` for `{example}` "
        "(`x-dead-letter-stream`; the braces are a Redis hash tag, not a parameter)."
    )


def build_asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every queue of `shared.registry.QUEUES`."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in QUEUES:
        ident = channel_id(spec.name)
        if ident in channels:
            raise NameCollisionError(f"two queues give the channel id {ident!r}")
        channels[ident] = _channel(spec)
        for key, operation in _operations(spec).items():
            if key in operations:
                raise NameCollisionError(f"operation {key!r} is declared twice")
            operations[key] = operation
        for message_type in spec.message_types:
            messages[message_type_name(message_type)] = _message(message_type)
    schemas = component_schemas()
    missing = sorted(name for name in messages if name not in schemas)
    if missing:
        raise DanglingReferenceError(f"message types without a component schema: {missing}")
    kinds = sorted({spec.kind for spec in QUEUES})
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "codegen-orchestrator queues",
            "version": str(QueueMeta.model_fields["version"].default),
            "description": _description(),
            "tags": [
                {
                    "name": kind,
                    "description": _KIND_DESCRIPTIONS.get(kind, f"Streams of kind {kind}."),
                }
                for kind in kinds
            ],
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": dict(sorted(messages.items())),
            "schemas": schemas,
        },
    }
