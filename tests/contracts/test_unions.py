"""`WorkerCommand` and `WorkerResponse`: discriminated unions parseable from JSON."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

import shared.contracts as ours
from tests.contracts import spec_reference as spec
from tests.contracts.test_conformance import ADDITIONS

CONFIG = {"name": "dev", "agent": "claude-code", "capabilities": ["git"], "env_vars": {}}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"command": "create", "request_id": "r", "config": CONFIG}, ours.CreateWorkerCommand),
        (
            {"command": "send_message", "request_id": "r", "worker_id": "w", "message": "m"},
            ours.SendMessageCommand,
        ),
        ({"command": "delete", "request_id": "r", "worker_id": "w"}, ours.DeleteWorkerCommand),
    ],
)
def test_commands_parse_by_discriminator(payload: dict[str, object], expected: type) -> None:
    """Each command payload parses into its own class, from a dict and from JSON."""
    assert type(ours.parse_worker_command(payload)) is expected
    as_json = ours.WorkerCommandAdapter.dump_json(ours.parse_worker_command(payload))
    assert type(ours.parse_worker_command(as_json)) is expected


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (spec.CreateWorkerResponse(request_id="r", success=True, worker_id="w"), "create"),
        (spec.CreateWorkerResponse(request_id="r", success=False, error="no"), "create"),
        (spec.SendMessageResponse(request_id="r", success=True, response="ok"), "send_message"),
        (spec.SendMessageResponse(request_id="r", success=False), "send_message"),
        (spec.DeleteWorkerResponse(request_id="r", success=True), "delete"),
    ],
)
def test_responses_without_discriminator_are_recognised(
    reference: BaseModel, expected: str
) -> None:
    """Payloads of the specification's responses (no `command`) parse to the right class."""
    parsed = ours.parse_worker_response(reference.model_dump_json())
    assert parsed.command == expected
    added = ADDITIONS.get(type(reference).__name__, set())
    assert parsed.model_dump(exclude={"command", *added}) == reference.model_dump()
    assert all(getattr(parsed, name) is None for name in added)


def test_our_responses_carry_their_discriminator() -> None:
    """Our responses write `command`, so a failed create is not mistaken for a delete."""
    failed_create = ours.CreateWorkerResponse(request_id="r", success=False, error="boom")
    payload = failed_create.model_dump(mode="json", exclude_none=True)
    assert payload["command"] == "create"
    assert type(ours.parse_worker_response(payload)) is ours.CreateWorkerResponse


def test_unknown_command_is_a_clear_error() -> None:
    """An unknown `command` value fails validation and names the tag."""
    with pytest.raises(ValidationError, match="restart"):
        ours.parse_worker_command({"command": "restart", "request_id": "r", "worker_id": "w"})


def test_invalid_json_is_a_validation_error() -> None:
    """Malformed JSON raises ValidationError, not a bare decoding error."""
    with pytest.raises(ValidationError):
        ours.parse_worker_response(b"{not json")
