"""Property-based round trips: ours ↔ JSON ↔ ours, spec → ours → spec, ours → spec → ours."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import shared.contracts as ours
from tests.contracts import spec_reference as spec
from tests.contracts.strategies import models
from tests.contracts.test_conformance import ADDITIONS

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _instants(value: Any) -> Any:
    """A dumped model with every datetime read as an aware UTC instant, for comparison."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, dict):
        return {key: _instants(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_instants(item) for item in value]
    return value


def _pairs() -> list[tuple[type[BaseModel], type[BaseModel]]]:
    return [(getattr(ours, ref.__name__), ref) for ref in spec.SEED_CLASSES]


@pytest.mark.parametrize(("mine", "reference"), _pairs(), ids=lambda c: c.__name__)
def test_ours_roundtrip_through_json(mine: type[BaseModel], reference: type[BaseModel]) -> None:
    """Any instance of ours dumps to JSON and parses back equal."""

    @FAST
    @given(models(mine))
    def check(instance: BaseModel) -> None:
        assert type(instance).model_validate_json(instance.model_dump_json()) == instance

    check()


@pytest.mark.parametrize(("mine", "reference"), _pairs(), ids=lambda c: c.__name__)
def test_spec_payloads_validate_in_ours_and_come_back(
    mine: type[BaseModel], reference: type[BaseModel]
) -> None:
    """A payload of the spec's class validates in ours; ours writes it back unchanged."""

    @FAST
    @given(models(reference))
    def check(original: BaseModel) -> None:
        parsed = mine.model_validate_json(original.model_dump_json())
        back = reference.model_validate_json(parsed.model_dump_json())
        assert _instants(back.model_dump()) == _instants(original.model_dump())

    check()


@pytest.mark.parametrize(("mine", "reference"), _pairs(), ids=lambda c: c.__name__)
def test_our_payloads_validate_in_spec_and_come_back(
    mine: type[BaseModel], reference: type[BaseModel]
) -> None:
    """A payload of ours validates in the spec's class; the spec writes it back unchanged."""

    @FAST
    @given(models(mine))
    def check(original: BaseModel) -> None:
        parsed = reference.model_validate_json(original.model_dump_json())
        back = mine.model_validate_json(parsed.model_dump_json())
        added = ADDITIONS.get(reference.__name__, set())  # the spec's class drops them
        assert back == original.model_copy(update=dict.fromkeys(added))

    check()


@FAST
@given(st.one_of(models(ours.CreateWorkerCommand), models(ours.SendMessageCommand),
                 models(ours.DeleteWorkerCommand)))  # fmt: skip
def test_worker_commands_roundtrip_through_the_union(command: BaseModel) -> None:
    """Any command round-trips through `parse_worker_command` to its own class."""
    assert ours.parse_worker_command(command.model_dump_json()) == command


@FAST
@given(st.one_of(models(ours.CreateWorkerResponse), models(ours.SendMessageResponse),
                 models(ours.DeleteWorkerResponse)))  # fmt: skip
def test_worker_responses_roundtrip_through_the_union(response: BaseModel) -> None:
    """Any response round-trips through `parse_worker_response` to its own class."""
    assert ours.parse_worker_response(response.model_dump_json()) == response
