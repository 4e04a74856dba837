"""The Queue Overview of the specification, as code, once.

Everything that names a queue reads it from here: publishers check that a message type is
allowed on a queue, consumers validate against it, the AsyncAPI document is generated from it,
and `orchestrator queues` lists it. Names may be patterns (`worker:{id}:input`); `resolve`
maps a concrete stream name back to its entry.

Key layout (Redis Cluster safe): a queue's companion keys wrap the queue name in a hash tag,
`{<queue>}:<suffix>`. Redis hashes a tagged key by the text inside the braces, which is the
whole queue name, the same text it hashes for the untagged queue key itself. So a queue, its
dead-letter stream and its bookkeeping keys all live in one slot, and multi-key scripts that
move an entry to its dead-letter stream stay valid on a cluster.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel

from shared.contracts import (
    AnsibleDeployMessage,
    AnsibleDeployResult,
    BaseResult,
    CreateWorkerCommand,
    CreateWorkerResponse,
    DeleteWorkerCommand,
    DeleteWorkerResponse,
    DeployMessage,
    DeployResult,
    EngineeringMessage,
    EngineeringResult,
    ProgressEvent,
    ProvisionerMessage,
    ProvisionerResult,
    ScaffolderMessage,
    SendMessageCommand,
    SendMessageResponse,
    WorkerInputMessage,
    WorkerOutputMessage,
)

__all__ = [
    "QUEUES",
    "WORKER_INDEX_KEY",
    "Actor",
    "QueueKind",
    "QueueSpec",
    "RegistryError",
    "UnknownQueueError",
    "WrongMessageTypeError",
    "dead_letter_stream",
    "get",
    "iter_queues",
    "message_type_name",
    "queue_key",
    "resolve",
    "worker_record_key",
]


class Actor(StrEnum):
    """Logical actors of the specification (values are their names there)."""

    PO_WORKER = "PO-Worker"
    DEVELOPER_WORKER = "Developer-Worker"
    LANGGRAPH = "langgraph"
    WORKER_MANAGER = "worker-manager"
    WORKER_WRAPPER = "worker-wrapper"
    TELEGRAM_BOT = "telegram-bot"
    SCAFFOLDER = "scaffolder"
    INFRA_SERVICE = "infra-service"
    SCHEDULER = "scheduler"
    API = "api"


QueueKind = Literal["queue", "progress", "result"]


class RegistryError(LookupError):
    """Base of the registry's errors."""


class UnknownQueueError(RegistryError):
    """A stream name that matches no queue of the registry."""


class WrongMessageTypeError(RegistryError, TypeError):
    """A message whose type the registry does not allow on a queue."""


_PARAM = re.compile(r"\{(\w+)\}")
_RESULT_TYPES: tuple[type[BaseModel], ...] = (
    BaseResult,
    EngineeringResult,
    DeployResult,
    ProvisionerResult,
    AnsibleDeployResult,
)


@dataclass(frozen=True)
class QueueSpec:
    """One row of the Queue Overview: a stream (or a pattern of streams) and its rules."""

    name: str
    """Stream name, or a pattern with `{param}` placeholders such as `worker:{id}:input`."""
    message_types: tuple[type[BaseModel], ...]
    writers: tuple[Actor, ...]
    consumer: Actor
    purpose: str
    kind: QueueKind = "queue"
    observers: tuple[Actor, ...] = ()
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = _PARAM.split(self.name)
        # split() alternates literal text and parameter names
        pattern = "".join(
            re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^{{}}]+?)"
            for index, part in enumerate(parts)
        )
        object.__setattr__(self, "_regex", re.compile(f"^{pattern}$"))

    @property
    def writer(self) -> Actor:
        """The logical writer (the first, for streams that several actors write)."""
        return self.writers[0]

    @property
    def parameters(self) -> tuple[str, ...]:
        """Names of the placeholders of a pattern (empty for a fixed name)."""
        return tuple(_PARAM.findall(self.name))

    @property
    def is_pattern(self) -> bool:
        """True when the name has placeholders."""
        return bool(self.parameters)

    @property
    def consumer_group(self) -> str:
        """The consumer group of the consuming actor."""
        return self.consumer.value

    @property
    def groups(self) -> tuple[str, ...]:
        """Every group that must acknowledge an entry: the consumer's, then each observer's."""
        return (self.consumer.value, *(observer.value for observer in self.observers))

    def match(self, stream: str) -> dict[str, str] | None:
        """The parameters of a concrete stream name, or None when it is not this queue."""
        found = self._regex.match(stream)
        return None if found is None else found.groupdict()

    def format(self, **params: str | int) -> str:
        """The concrete stream name of a pattern: `format(id="42")` → `worker:42:input`."""
        missing = set(self.parameters) - params.keys()
        if missing:
            raise ValueError(f"queue {self.name!r} needs parameter(s) {sorted(missing)}")
        return self.name.format(**{key: str(value) for key, value in params.items()})

    def allows(self, message_type: type[BaseModel]) -> bool:
        """True when messages of this type may be published on this queue."""
        return message_type in self.message_types

    def check(self, message: BaseModel) -> None:
        """Raise `WrongMessageTypeError` unless `message` may be published here."""
        if not self.allows(type(message)):
            allowed = ", ".join(t.__name__ for t in self.message_types)
            raise WrongMessageTypeError(
                f"{type(message).__name__} is not allowed on {self.name!r} (allowed: {allowed})"
            )


QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec(
        name="engineering:queue",
        message_types=(EngineeringMessage,),
        writers=(Actor.PO_WORKER,),
        consumer=Actor.LANGGRAPH,
        purpose="Start development task",
    ),
    QueueSpec(
        name="deploy:queue",
        message_types=(DeployMessage,),
        writers=(Actor.PO_WORKER,),
        consumer=Actor.LANGGRAPH,
        purpose="Start deploy task",
    ),
    QueueSpec(
        name="scaffolder:queue",
        message_types=(ScaffolderMessage,),
        writers=(Actor.LANGGRAPH,),
        consumer=Actor.SCAFFOLDER,
        purpose="Init project structure",
    ),
    QueueSpec(
        name="worker:commands",
        message_types=(CreateWorkerCommand, SendMessageCommand, DeleteWorkerCommand),
        writers=(Actor.LANGGRAPH, Actor.TELEGRAM_BOT, Actor.SCHEDULER),
        consumer=Actor.WORKER_MANAGER,
        purpose="Spawn/kill workers",
    ),
    QueueSpec(
        name="worker:responses",
        message_types=(CreateWorkerResponse, SendMessageResponse, DeleteWorkerResponse),
        writers=(Actor.WORKER_MANAGER,),
        consumer=Actor.LANGGRAPH,
        purpose="Worker lifecycle events",
        # the front doors' own requests (PO sessions) are answered here too
        observers=(Actor.TELEGRAM_BOT,),
    ),
    QueueSpec(
        name="worker:{id}:input",
        message_types=(WorkerInputMessage,),
        writers=(Actor.TELEGRAM_BOT, Actor.WORKER_MANAGER),
        consumer=Actor.WORKER_WRAPPER,
        purpose="User message to agent",
    ),
    QueueSpec(
        name="worker:{id}:output",
        message_types=(WorkerOutputMessage,),
        writers=(Actor.WORKER_WRAPPER,),
        consumer=Actor.TELEGRAM_BOT,
        purpose="Agent reply to user",
    ),
    QueueSpec(
        name="provisioner:queue",
        message_types=(ProvisionerMessage,),
        writers=(Actor.SCHEDULER,),
        consumer=Actor.INFRA_SERVICE,
        purpose="Setup server",
    ),
    QueueSpec(
        name="ansible:deploy:queue",
        message_types=(AnsibleDeployMessage,),
        writers=(Actor.LANGGRAPH,),
        consumer=Actor.INFRA_SERVICE,
        purpose="Run ansible deploy",
    ),
    QueueSpec(
        name="task_progress:{task_id}",
        message_types=(ProgressEvent,),
        writers=(
            Actor.LANGGRAPH,
            Actor.SCAFFOLDER,
            Actor.INFRA_SERVICE,
            Actor.WORKER_WRAPPER,
            Actor.WORKER_MANAGER,
        ),
        consumer=Actor.TELEGRAM_BOT,
        purpose="Task progress notification (capped, expiring, ends with a terminal event)",
        kind="progress",
    ),
    QueueSpec(
        name="results:{actor}",
        message_types=_RESULT_TYPES,
        writers=(Actor.SCAFFOLDER, Actor.INFRA_SERVICE, Actor.LANGGRAPH),
        consumer=Actor.LANGGRAPH,
        purpose="Results (BaseResult subclasses) sent to a message's callback_stream",
        kind="result",
    ),
)
"""Every queue, in the order of the specification's Queue Overview, then the event streams."""

_BY_NAME: dict[str, QueueSpec] = {spec.name: spec for spec in QUEUES}


def get(name: str) -> QueueSpec:
    """The entry registered under exactly this name or pattern."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownQueueError(f"no queue named {name!r} in the registry") from None


def resolve(stream: str) -> QueueSpec:
    """The entry of a concrete stream name: `worker:42:input` → `worker:{id}:input`."""
    exact = _BY_NAME.get(stream)
    if exact is not None:
        return exact
    for spec in QUEUES:
        if spec.is_pattern and spec.match(stream) is not None:
            return spec
    raise UnknownQueueError(f"stream {stream!r} matches no queue of the registry")


def iter_queues(kind: QueueKind | None = None) -> Iterator[QueueSpec]:
    """The entries, optionally only those of one kind."""
    return (spec for spec in QUEUES if kind is None or spec.kind == kind)


def queue_key(stream: str, suffix: str) -> str:
    """A companion key of a stream, in the stream's hash slot: `{<stream>}:<suffix>`."""
    return f"{{{stream}}}:{suffix}"


def dead_letter_stream(stream: str) -> str:
    """The dead-letter stream of a concrete stream: `{engineering:queue}:dlq`."""
    return queue_key(stream, "dlq")


WORKER_INDEX_KEY = "workers:index"
"""The worker registry's set of worker ids. The worker-manager writes the registry; the
scheduler (idle workers) and the front doors (is a PO worker alive) read it."""


def worker_record_key(worker_id: str) -> str:
    """The worker registry's hash of one worker: `workers:{<worker_id>}`."""
    return f"workers:{{{worker_id}}}"


def message_type_name(message_type: type[BaseModel]) -> str:
    """The name a message type carries in envelopes and documents (its class name)."""
    return message_type.__name__
