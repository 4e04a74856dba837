"""Typed contracts of the codegen orchestrator: REST DTOs and queue messages.

The specification (`spec/contracts.md`) is binding: every class, field, type, default and enum
value here is the specification's, in its file structure (`base.py`, `events.py`, `dto/`,
`queues/`). A payload produced by the specification's own classes validates here and comes
back unchanged, and the other way round.

Corrections, each keeping the wire format compatible:

1. Timestamps are timezone-aware UTC. The specification's `datetime.utcnow` is deprecated
   and naive; our defaults use `datetime.now(UTC)`, and a naive timestamp on input is read
   as UTC (aware ones are converted to UTC). On the wire they are ISO 8601 with a `Z`
   suffix, which the specification's classes read back as the same instant.
2. `WorkerCommand` and `WorkerResponse` are discriminated unions, parseable from JSON with
   `parse_worker_command` / `parse_worker_response` (`TypeAdapter`s). The specification's
   three responses have no field that tells them apart, so each response carries
   `command` (`"create"`, `"send_message"`, `"delete"`), defaulted per class, like the
   commands. A payload that lacks `command` is recognised by its keys.
3. Untyped containers are typed for mypy strict without changing their JSON: `dict` becomes
   `dict[str, Any]`; `context: dict[str, str] = {}` becomes a `default_factory`.
4. Agent run records (an addition): `WorkerOutputMessage` and `SendMessageResponse` carry
   an optional `run` (`AgentRunRecord`: the agent and its version, the prompt's size, the
   answer, a bounded tool-call transcript, tokens, cost, duration, exit status), defaulting
   to None, so the specification's classes read our payloads (they ignore it) and ours
   read theirs.

Unknown fields, on read: ignored (pydantic's `extra="ignore"`), so a newer publisher that
adds a field never breaks an older consumer. They are not kept, so they are never emitted:
what we write is exactly the fields of our classes.
"""

from shared.contracts.base import BaseMessage, BaseResult, QueueMeta, new_id
from shared.contracts.dto import (
    ProjectCreate,
    ProjectDTO,
    ProjectStatus,
    TaskCreate,
    TaskDTO,
    TaskStatus,
    TaskType,
    UserDTO,
)
from shared.contracts.events import ProgressEvent, ProgressEventType
from shared.contracts.queues import (
    AgentName,
    AgentRunRecord,
    AgentToolCall,
    AnsibleDeployMessage,
    AnsibleDeployResult,
    CreateWorkerCommand,
    CreateWorkerResponse,
    DeleteWorkerCommand,
    DeleteWorkerResponse,
    DeployMessage,
    DeployResult,
    EngineeringMessage,
    EngineeringResult,
    ProvisionerMessage,
    ProvisionerResult,
    ScaffolderMessage,
    SendMessageCommand,
    SendMessageResponse,
    WorkerCommand,
    WorkerCommandAdapter,
    WorkerCommandName,
    WorkerConfig,
    WorkerInputMessage,
    WorkerOutputMessage,
    WorkerResponse,
    WorkerResponseAdapter,
    parse_worker_command,
    parse_worker_response,
)

__all__ = [
    "AgentName",
    "AgentRunRecord",
    "AgentToolCall",
    "AnsibleDeployMessage",
    "AnsibleDeployResult",
    "BaseMessage",
    "BaseResult",
    "CreateWorkerCommand",
    "CreateWorkerResponse",
    "DeleteWorkerCommand",
    "DeleteWorkerResponse",
    "DeployMessage",
    "DeployResult",
    "EngineeringMessage",
    "EngineeringResult",
    "ProgressEvent",
    "ProgressEventType",
    "ProjectCreate",
    "ProjectDTO",
    "ProjectStatus",
    "ProvisionerMessage",
    "ProvisionerResult",
    "QueueMeta",
    "ScaffolderMessage",
    "SendMessageCommand",
    "SendMessageResponse",
    "TaskCreate",
    "TaskDTO",
    "TaskStatus",
    "TaskType",
    "UserDTO",
    "WorkerCommand",
    "WorkerCommandAdapter",
    "WorkerCommandName",
    "WorkerConfig",
    "WorkerInputMessage",
    "WorkerOutputMessage",
    "WorkerResponse",
    "WorkerResponseAdapter",
    "new_id",
    "parse_worker_command",
    "parse_worker_response",
]
