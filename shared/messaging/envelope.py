"""The envelope: one stream entry per message, its fields, and decoding with the registry.

An entry has two fields, so a reader parses 4 strings per entry rather than 18 (parsing is
most of a Python consumer's cost per message):

| field | meaning |
|---|---|
| `meta` | compact JSON object of the metadata below |
| `payload` | the message as JSON (pydantic) |

`meta` keys: `type` message type name (`registry.message_type_name`), `id` message id
(UUID, named by the messages it causes), `v` schema version (`QueueMeta.version`),
`correlation_id`, `causation_id` (`id` of the message whose handler published this one),
`traceparent` (W3C trace context of the publishing span), `published_ms` (Unix
milliseconds), `producer` (the publishing actor). Empty values are left out.

Reading is lenient about the layout: the metadata may also come as top-level fields of the
same names (an entry written by hand, e.g. `XADD q * type T payload {...}`), and an entry
without a type is decoded by the queue's allowed types: by the contracts' union where they
form one (`worker:commands`, `worker:responses`), else as the narrowest type that holds the
payload's keys (`results:{actor}`). An entry without `payload` is malformed.
"""

from __future__ import annotations

import os
import time
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic_core
from pydantic import BaseModel, ValidationError

from shared import registry
from shared.contracts import (
    WorkerCommand,
    WorkerResponse,
    parse_worker_command,
    parse_worker_response,
)
from shared.messaging.errors import DecodeError

__all__ = [
    "SCHEMA_VERSION",
    "Envelope",
    "as_str",
    "decode_message",
    "envelope_fields",
    "new_message_id",
    "new_message_ids",
]

SCHEMA_VERSION = "1"
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_message_ids(count: int) -> list[str]:
    """`count` random UUIDs (version 4) as text, from one read of the OS's randomness;
    `str(uuid.uuid4())` at a fraction of its cost."""
    pool = os.urandom(16 * count).hex()
    ids = []
    for start in range(0, 32 * count, 32):
        h = pool[start : start + 32]
        ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}")
    return ids


def new_message_id() -> str:
    """A random UUID (version 4) as text."""
    return new_message_ids(1)[0]


def _now_ms() -> int:
    return int(time.time() * 1000)


def as_str(value: str | bytes) -> str:
    """A field read from Redis as text (clients may or may not decode responses)."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Envelope:
    """The metadata and JSON payload of one message on a stream."""

    type: str
    payload: str
    correlation_id: str
    message_id: str = field(default_factory=new_message_id)
    causation_id: str = ""
    traceparent: str = ""
    published_ms: int = field(default_factory=_now_ms)
    producer: str = ""
    version: str = SCHEMA_VERSION

    def to_fields(self) -> dict[str, str]:
        """The stream entry's fields: `type`, `meta`, `payload`."""
        meta: dict[str, str | int] = {
            "type": self.type,
            "id": self.message_id,
            "v": self.version,
            "correlation_id": self.correlation_id,
            "published_ms": self.published_ms,
            "producer": self.producer,
        }
        if self.causation_id:
            meta["causation_id"] = self.causation_id
        if self.traceparent:
            meta["traceparent"] = self.traceparent
        return {"meta": pydantic_core.to_json(meta).decode(), "payload": self.payload}

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> Envelope:
        """Read an entry's fields; raises `DecodeError("malformed")` without a payload."""
        payload = fields.get("payload")
        if payload is None:
            raise DecodeError("malformed", "entry has no 'payload' field")
        meta: Mapping[str, Any] = fields
        raw_meta = fields.get("meta")
        if raw_meta is not None:
            try:
                decoded = pydantic_core.from_json(raw_meta)
            except ValueError:
                raise DecodeError("malformed", "entry 'meta' field is not JSON") from None
            if not isinstance(decoded, dict):
                raise DecodeError("malformed", "entry 'meta' field is not a JSON object")
            meta = decoded
        get = meta.get
        published_ms = get("published_ms") or 0
        if type(published_ms) is not int:
            try:
                published_ms = int(published_ms)
            except (TypeError, ValueError):
                published_ms = 0
        return cls(
            str(fields.get("type") or get("type", "")),
            payload,
            str(get("correlation_id", "")),
            str(get("id", "")),
            str(get("causation_id", "")),
            str(get("traceparent", "")),
            published_ms,
            str(get("producer", "")),
            str(get("v", SCHEMA_VERSION)),
        )


def envelope_fields(fields: Mapping[Any, Any]) -> dict[str, str]:
    """Entry fields as a `str → str` dict, whatever the client's decoding."""
    return {as_str(key): as_str(value) for key, value in fields.items()}


_UNION_PARSERS: dict[frozenset[type[BaseModel]], Callable[[str], BaseModel]] = {}


def _union_parser(spec: registry.QueueSpec) -> Callable[[str], BaseModel] | None:
    """The contracts' parse helper of a queue whose types form one of their unions."""
    if not _UNION_PARSERS:
        for union, parse in (
            (WorkerCommand, parse_worker_command),
            (WorkerResponse, parse_worker_response),
        ):
            _UNION_PARSERS[frozenset(union_members(union))] = parse
    return _UNION_PARSERS.get(frozenset(spec.message_types))


def union_members(annotation: Any) -> set[type[BaseModel]]:
    """The model classes a union type admits: its arms, unwrapping `Annotated` and nested
    unions, never the models its members merely contain (`WorkerConfig` of a command)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation}
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Annotated:
        return union_members(arguments[0])
    if origin is typing.Union or origin is types.UnionType:
        return set().union(*(union_members(argument) for argument in arguments))
    return set()


_TYPES_BY_NAME: dict[str, dict[str, type[BaseModel]]] = {}


def _types_by_name(spec: registry.QueueSpec) -> dict[str, type[BaseModel]]:
    found = _TYPES_BY_NAME.get(spec.name)
    if found is None:
        found = {registry.message_type_name(t): t for t in spec.message_types}
        _TYPES_BY_NAME[spec.name] = found
    return found


def decode_message(spec: registry.QueueSpec, envelope: Envelope) -> BaseModel:
    """The typed message of an envelope, validated against the queue's allowed types."""
    by_name = _types_by_name(spec)
    try:
        if envelope.type:
            message_type = by_name.get(envelope.type)
            if message_type is None:
                raise DecodeError(
                    "unknown_type", f"{envelope.type!r} is not allowed on {spec.name!r}"
                )
            return message_type.model_validate_json(envelope.payload)
        parse = _union_parser(spec)
        if parse is not None:
            return parse(envelope.payload)
        if len(spec.message_types) == 1:
            return spec.message_types[0].model_validate_json(envelope.payload)
        shaped = _type_by_shape(spec, envelope.payload)
        if shaped is not None:
            return shaped.model_validate_json(envelope.payload)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise DecodeError("malformed", f"payload is not JSON: {_short(exc)}") from None
        raise DecodeError("invalid", _short(exc)) from None
    raise DecodeError("unknown_type", f"entry names no type and {spec.name!r} allows several")


def _type_by_shape(spec: registry.QueueSpec, payload: str) -> type[BaseModel] | None:
    """The narrowest allowed type that holds a typeless payload's keys (`results:{actor}`:
    a `DeployResult`'s keys fit `DeployResult` and the wider `AnsibleDeployResult`; the
    narrower wins). Keys no type knows count against a type; a tie is no answer."""
    try:
        data = pydantic_core.from_json(payload)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return spec.message_types[0]  # its validation names what is wrong
    keys = set(data)
    ranked = sorted(
        (len(keys - set(t.model_fields)), len(t.model_fields), index, t)
        for index, t in enumerate(spec.message_types)
    )
    best, runner_up = ranked[0], ranked[1]
    if best[:2] == runner_up[:2]:
        return None
    return best[3]


def _short(exc: ValidationError) -> str:
    """A validation error in a few lines (locations and messages, never input values)."""
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)[:10]
    ]
    return f"{exc.title}: " + "; ".join(parts)
