"""Our contracts against the specification's own classes: fields, types, defaults, enums."""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

import shared.contracts as ours
from tests.contracts import spec_reference as spec

RESPONSES_WITH_DISCRIMINATOR = {
    "CreateWorkerResponse": "create",
    "SendMessageResponse": "send_message",
    "DeleteWorkerResponse": "delete",
}


ADDITIONS: dict[str, set[str]] = {
    "SendMessageResponse": {"run"},
    "WorkerOutputMessage": {"run"},
}
"""Optional fields added to the specification's classes (`shared.contracts`, correction 4)."""


def _normalise(annotation: Any) -> Any:
    """An annotation with the documented, wire-neutral corrections undone."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is typing.Annotated:
        return _normalise(args[0])
    if origin in (Union, types.UnionType):
        return frozenset(_normalise(arg) for arg in args)
    if origin is dict and args and args[1] is Any:
        return dict  # dict[str, Any] is the typed spelling of the specification's bare dict
    if origin is not None:
        return (origin, tuple(_normalise(arg) for arg in args))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel | Enum):
        return annotation.__name__  # our class of the same name stands for the spec's
    return annotation


def _default(field: Any) -> Any:
    if field.default_factory is not None:
        produced = field.default_factory()
        return type(produced) if not isinstance(produced, dict) else produced
    return field.default


@pytest.mark.parametrize("reference", spec.SEED_CLASSES, ids=lambda c: c.__name__)
def test_seed_class_fields_match_the_specification(reference: type[BaseModel]) -> None:
    """Every field of a seed class: same name, type, required-ness and default as the spec."""
    mine: type[BaseModel] = getattr(ours, reference.__name__)
    extra = set(mine.model_fields) - set(reference.model_fields)
    for added in ADDITIONS.get(reference.__name__, set()) & extra:
        assert not mine.model_fields[added].is_required(), added  # optional: old readers
        assert mine.model_fields[added].default is None, added
        extra.discard(added)
    if reference.__name__ in RESPONSES_WITH_DISCRIMINATOR:
        assert extra == {"command"}
        assert (
            mine.model_fields["command"].default
            == (RESPONSES_WITH_DISCRIMINATOR[reference.__name__])
        )
    else:
        assert extra == set()
    assert set(reference.model_fields) <= set(mine.model_fields)
    for name, expected in reference.model_fields.items():
        actual = mine.model_fields[name]
        assert _normalise(actual.annotation) == _normalise(expected.annotation), name
        assert actual.is_required() == expected.is_required(), name
        if expected.default is not PydanticUndefined or expected.default_factory is not None:
            assert _default(actual) == _default(expected), name


@pytest.mark.parametrize("reference", spec.SEED_ENUMS, ids=lambda c: c.__name__)
def test_enum_values_match_the_specification(reference: type[Enum]) -> None:
    """Enum members and values are exactly the specification's, in its order."""
    mine: type[Enum] = getattr(ours, reference.__name__)
    assert [(m.name, m.value) for m in mine] == [(m.name, m.value) for m in reference]
    assert issubclass(mine, str)


def test_every_seed_class_is_exported() -> None:
    """`shared.contracts` re-exports every class of the specification by its name."""
    names = {c.__name__ for c in spec.SEED_CLASSES} | {e.__name__ for e in spec.SEED_ENUMS}
    assert names <= set(ours.__all__)


def test_from_attributes_on_dtos() -> None:
    """DTOs read ORM objects (`from_attributes`), as the specification configures."""
    for name in ("ProjectDTO", "TaskDTO", "UserDTO"):
        assert getattr(ours, name).model_config.get("from_attributes") is True


def test_naive_timestamps_are_read_as_utc() -> None:
    """A naive timestamp on input becomes the same wall time in UTC."""
    event = ours.ProgressEvent.model_validate(
        {"type": "started", "request_id": "r", "timestamp": "2026-01-02T03:04:05"}
    )
    assert event.timestamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_aware_timestamps_are_converted_to_utc() -> None:
    """An aware timestamp in another zone is converted to UTC, the same instant."""
    meta = ours.QueueMeta.model_validate({"timestamp": "2026-01-02T05:04:05+02:00"})
    assert meta.timestamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert meta.timestamp.utcoffset() is not None


def test_default_timestamps_are_aware_utc() -> None:
    """Default timestamps are timezone-aware and serialise with a Z suffix."""
    message = ours.EngineeringMessage(task_id="t", project_id="p", user_id=1)
    assert message.timestamp.tzinfo is UTC
    assert message.model_dump(mode="json")["timestamp"].endswith("Z")


def test_unknown_fields_are_ignored_and_never_emitted() -> None:
    """A newer publisher's extra field is accepted on read and not written back."""
    payload = {"request_id": "r", "prompt": "hi", "added_in_v2": {"x": 1}}
    message = ours.WorkerInputMessage.model_validate(payload)
    assert "added_in_v2" not in message.model_dump()


def test_default_ids_are_unique() -> None:
    """`correlation_id` and `request_id` default to fresh UUIDs per message."""
    a = ours.DeployMessage(task_id="t", project_id="p", user_id=1)
    b = ours.DeployMessage(task_id="t", project_id="p", user_id=1)
    assert a.request_id != b.request_id
    assert a.correlation_id != b.correlation_id
