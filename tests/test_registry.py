"""The queue registry: the specification's Queue Overview as code."""

from __future__ import annotations

import pytest

from shared import registry
from shared.contracts import (
    CreateWorkerCommand,
    EngineeringMessage,
    EngineeringResult,
    ProgressEvent,
    WorkerConfig,
    WorkerInputMessage,
)
from shared.registry import Actor

SPEC_OVERVIEW = [
    ("engineering:queue", {"EngineeringMessage"}, "PO-Worker", "langgraph"),
    ("deploy:queue", {"DeployMessage"}, "PO-Worker", "langgraph"),
    ("scaffolder:queue", {"ScaffolderMessage"}, "langgraph", "scaffolder"),
    (
        "worker:commands",
        {"CreateWorkerCommand", "SendMessageCommand", "DeleteWorkerCommand"},
        "langgraph",
        "worker-manager",
    ),
    (
        "worker:responses",
        {"CreateWorkerResponse", "SendMessageResponse", "DeleteWorkerResponse"},
        "worker-manager",
        "langgraph",
    ),
    ("worker:{id}:input", {"WorkerInputMessage"}, "telegram-bot", "worker-wrapper"),
    ("worker:{id}:output", {"WorkerOutputMessage"}, "worker-wrapper", "telegram-bot"),
    ("provisioner:queue", {"ProvisionerMessage"}, "scheduler", "infra-service"),
    ("ansible:deploy:queue", {"AnsibleDeployMessage"}, "langgraph", "infra-service"),
]


@pytest.mark.parametrize(("name", "types", "writer", "consumer"), SPEC_OVERVIEW)
def test_queue_overview_rows(name: str, types: set[str], writer: str, consumer: str) -> None:
    """Each row of the spec's Queue Overview: name, message types, logical writer, consumer."""
    spec = registry.get(name)
    assert {t.__name__ for t in spec.message_types} == types
    assert spec.writer.value == writer
    assert spec.consumer.value == consumer
    assert spec.consumer_group == consumer
    assert spec.purpose


def test_registry_order_follows_the_specification() -> None:
    """The queues come in the spec's order, then the progress and result streams."""
    names = [spec.name for spec in registry.QUEUES]
    assert names[: len(SPEC_OVERVIEW)] == [row[0] for row in SPEC_OVERVIEW]
    assert {"task_progress:{task_id}", "results:{actor}"} <= set(names)


def test_progress_stream_carries_progress_events() -> None:
    """`task_progress:{task_id}` carries ProgressEvent and is consumed by the telegram-bot."""
    spec = registry.resolve("task_progress:42")
    assert spec.message_types == (ProgressEvent,)
    assert spec.kind == "progress"
    assert spec.consumer is Actor.TELEGRAM_BOT


def test_result_streams_carry_results_only() -> None:
    """Callback streams accept BaseResult subclasses and nothing else."""
    spec = registry.resolve("results:langgraph")
    assert spec.allows(EngineeringResult)
    assert not spec.allows(EngineeringMessage)


@pytest.mark.parametrize(
    ("stream", "pattern", "params"),
    [
        ("worker:42:input", "worker:{id}:input", {"id": "42"}),
        ("worker:po-7:output", "worker:{id}:output", {"id": "po-7"}),
        ("task_progress:abc", "task_progress:{task_id}", {"task_id": "abc"}),
        ("worker:commands", "worker:commands", {}),
    ],
)
def test_resolve_by_name_and_pattern(stream: str, pattern: str, params: dict[str, str]) -> None:
    """Concrete stream names resolve to their entry, with the pattern's parameters."""
    spec = registry.resolve(stream)
    assert spec.name == pattern
    assert spec.match(stream) == params


def test_format_builds_concrete_names() -> None:
    """A pattern formats into a concrete stream name and refuses missing parameters."""
    spec = registry.get("worker:{id}:input")
    assert spec.format(id=42) == "worker:42:input"
    with pytest.raises(ValueError, match="id"):
        spec.format()


def test_unknown_streams_are_refused() -> None:
    """A name that matches no queue raises UnknownQueueError naming it."""
    with pytest.raises(registry.UnknownQueueError, match="nope:queue"):
        registry.resolve("nope:queue")
    with pytest.raises(registry.UnknownQueueError):
        registry.get("worker:42:input")  # get() is by registered name only


def test_message_type_check() -> None:
    """A message is allowed only on the queues that carry its type."""
    command = CreateWorkerCommand(
        request_id="r",
        config=WorkerConfig(name="w", agent="claude-code", capabilities=[], env_vars={}),
    )
    registry.resolve("worker:commands").check(command)
    with pytest.raises(registry.WrongMessageTypeError, match="CreateWorkerCommand"):
        registry.resolve("worker:7:input").check(command)
    registry.resolve("worker:7:input").check(WorkerInputMessage(request_id="r", prompt="p"))


def test_dead_letter_stream_shares_the_hash_slot() -> None:
    """Dead-letter streams are `{queue}:dlq`: Redis hashes them like the queue itself."""
    assert registry.dead_letter_stream("engineering:queue") == "{engineering:queue}:dlq"
    assert registry.queue_key("worker:1:input", "done") == "{worker:1:input}:done"


def test_every_queue_has_groups() -> None:
    """Every queue names the groups that must acknowledge an entry, consumer first."""
    for spec in registry.QUEUES:
        assert spec.groups[0] == spec.consumer.value
