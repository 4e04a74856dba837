"""`worker:commands` (langgraph → worker-manager) and `worker:responses` (back).

`WorkerCommand` and `WorkerResponse` are discriminated unions. Commands carry the
specification's `command` field. Responses carry a `command` field too (a correction: the
specification's three responses cannot be told apart by shape): it names the command
answered and defaults per class, so our payloads say what they are. Payloads without it
(written by the specification's own classes) are still recognised by the keys they carry:
`worker_id` → create, `response` → send_message, neither → delete.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag, TypeAdapter

from shared.contracts.base import QueueMeta
from shared.contracts.queues.worker_io import AgentRunRecord

__all__ = [
    "AgentName",
    "CreateWorkerCommand",
    "CreateWorkerResponse",
    "DeleteWorkerCommand",
    "DeleteWorkerResponse",
    "SendMessageCommand",
    "SendMessageResponse",
    "WorkerCommand",
    "WorkerCommandAdapter",
    "WorkerCommandName",
    "WorkerConfig",
    "WorkerResponse",
    "WorkerResponseAdapter",
    "parse_worker_command",
    "parse_worker_response",
]

AgentName = Literal["claude-code", "factory-droid"]
WorkerCommandName = Literal["create", "send_message", "delete"]


class WorkerConfig(BaseModel):
    """Worker container configuration."""

    name: str
    agent: AgentName
    capabilities: list[str]
    """For example ["git", "github", "python"]."""
    env_vars: dict[str, str]
    mount_session_volume: bool = False


class CreateWorkerCommand(QueueMeta):
    """Create new worker."""

    command: Literal["create"] = "create"
    request_id: str
    config: WorkerConfig
    context: dict[str, str] = Field(default_factory=dict)


class SendMessageCommand(QueueMeta):
    """Send message to worker."""

    command: Literal["send_message"] = "send_message"
    request_id: str
    worker_id: str
    message: str
    timeout: int = 1800


class DeleteWorkerCommand(QueueMeta):
    """Delete worker."""

    command: Literal["delete"] = "delete"
    request_id: str
    worker_id: str


class CreateWorkerResponse(BaseModel):
    """Response to create command."""

    command: Literal["create"] = "create"
    request_id: str
    success: bool
    worker_id: str | None = None
    error: str | None = None


class SendMessageResponse(BaseModel):
    """Response to send_message command."""

    command: Literal["send_message"] = "send_message"
    request_id: str
    success: bool
    response: str | None = None
    error: str | None = None
    run: AgentRunRecord | None = None
    """The agent run's record, relayed from the wrapper (correction 4 of `shared.contracts`)."""


class DeleteWorkerResponse(BaseModel):
    """Response to delete command."""

    command: Literal["delete"] = "delete"
    request_id: str
    success: bool
    error: str | None = None


def _tag_of(value: Any, shape_keys: tuple[tuple[str, str], ...], fallback: str) -> str:
    """The `command` of a payload, read from the field or inferred from the keys it holds."""
    if isinstance(value, dict):
        explicit = value.get("command")
        if isinstance(explicit, str):
            return explicit
        for key, tag in shape_keys:
            if key in value:
                return tag
        return fallback
    return str(getattr(value, "command", fallback))


def _command_tag(value: Any) -> str:
    return _tag_of(value, (("config", "create"), ("message", "send_message")), "delete")


def _response_tag(value: Any) -> str:
    return _tag_of(value, (("worker_id", "create"), ("response", "send_message")), "delete")


WorkerCommand = Annotated[
    Annotated[CreateWorkerCommand, Tag("create")]
    | Annotated[SendMessageCommand, Tag("send_message")]
    | Annotated[DeleteWorkerCommand, Tag("delete")],
    Discriminator(_command_tag),
]
"""A message on `worker:commands`, told apart by `command`."""

WorkerResponse = Annotated[
    Annotated[CreateWorkerResponse, Tag("create")]
    | Annotated[SendMessageResponse, Tag("send_message")]
    | Annotated[DeleteWorkerResponse, Tag("delete")],
    Discriminator(_response_tag),
]
"""A message on `worker:responses`, told apart by `command` (or by shape when absent)."""

WorkerCommandAdapter: TypeAdapter[WorkerCommand] = TypeAdapter(WorkerCommand)
WorkerResponseAdapter: TypeAdapter[WorkerResponse] = TypeAdapter(WorkerResponse)


def parse_worker_command(data: str | bytes | dict[str, Any]) -> WorkerCommand:
    """Parse a `worker:commands` payload (JSON text or a dict) into its command class."""
    if isinstance(data, dict):
        return WorkerCommandAdapter.validate_python(data)
    return WorkerCommandAdapter.validate_json(data)


def parse_worker_response(data: str | bytes | dict[str, Any]) -> WorkerResponse:
    """Parse a `worker:responses` payload (JSON text or a dict) into its response class."""
    if isinstance(data, dict):
        return WorkerResponseAdapter.validate_python(data)
    return WorkerResponseAdapter.validate_json(data)
