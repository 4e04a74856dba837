"""shared/steps.py: a task step's request id, its parser, and where progress goes (real Redis)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from shared import registry
from shared.contracts import ProgressEvent, ProvisionerMessage
from shared.messaging import Bus, Envelope, decode_message
from shared.steps import (
    STEP_SEPARATOR,
    StepProgressReporter,
    progress_target,
    step_request_id,
    task_of_step,
)


def test_a_step_request_id_round_trips() -> None:
    """`<task_id>~<step>` gives the task back, also when the task id holds the separator."""
    assert step_request_id("t-1", "deploy") == f"t-1{STEP_SEPARATOR}deploy"
    assert task_of_step(step_request_id("t-1", "deploy")) == "t-1"
    assert task_of_step(step_request_id("a~b", "scaffold")) == "a~b"


@pytest.mark.parametrize("request_id", ["plain-uuid", "~scaffold", "t-1~", "", "~"])
def test_other_request_ids_belong_to_no_task(request_id: str) -> None:
    assert task_of_step(request_id) is None


@pytest.mark.parametrize(
    ("task_id", "step", "named"),
    [("", "deploy", "task id"), ("t-1", "", "step name"), ("t-1", "a~b", "'a~b'")],
)
def test_a_bad_step_request_id_is_refused_by_name(task_id: str, step: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        step_request_id(task_id, step)


def test_progress_target_is_the_task_or_the_message_request_id() -> None:
    """A step reports into its task's stream; any other message into its own request id's
    (never its correlation id, which the other messages of its flow share)."""
    step = ProvisionerMessage(server_handle="s", request_id="t-1~provision", correlation_id="c")
    plain = ProvisionerMessage(server_handle="s", request_id="r-1", correlation_id="c")
    assert progress_target(step) == ("t-1", False)
    assert progress_target(plain) == ("r-1", True)


async def test_a_reporter_needs_a_label(redis_client: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match="label"):
        StepProgressReporter(Bus(redis_client, actor=registry.Actor.SCAFFOLDER), label="")


async def test_a_step_s_events_join_its_task_stream_without_ending_it(
    redis_client: aioredis.Redis,
) -> None:
    """A step's start and end reach the task's stream as plain `progress` events with no
    percentage; the stream is still open (no terminal event) afterwards."""
    bus = Bus(redis_client, actor=registry.Actor.INFRA_SERVICE)
    reporter = StepProgressReporter(bus, label="infra")
    message = ProvisionerMessage(server_handle="s", request_id="task-7~provision")
    for kind in ("started", "completed"):
        event = ProgressEvent(type=kind, request_id=message.request_id, progress_pct=100)
        await reporter.report(message, event)
    failed = ProgressEvent(type="failed", request_id=message.request_id, message="no", error="x")
    await reporter.report(message, failed)

    spec = registry.resolve("task_progress:task-7")
    entries = await bus.transport.revrange("task_progress:task-7", count=10)
    decoded = [
        decode_message(spec, Envelope.from_fields(entry.fields))
        for entry in reversed(entries)
        if entry.fields is not None
    ]
    events = [e for e in decoded if isinstance(e, ProgressEvent)]
    assert len(decoded) == len(events) == 3
    assert [e.type for e in events] == ["progress"] * 3
    assert [e.current_step for e in events] == ["infra:started", "infra:completed", "infra:failed"]
    assert all(e.task_id == "task-7" and e.progress_pct is None for e in events)
    assert events[-1].message == "no: x"


async def test_a_plain_message_owns_a_stream_keyed_by_its_request_id(
    redis_client: aioredis.Redis,
) -> None:
    """Its events go there unchanged, and its terminal event ends a follower."""
    bus = Bus(redis_client, actor=registry.Actor.INFRA_SERVICE)
    reporter = StepProgressReporter(bus, label="infra")
    message = ProvisionerMessage(server_handle="s", request_id="r-9", correlation_id="c-9")
    await reporter.report(message, ProgressEvent(type="started", request_id="r-9"))
    await reporter.report(message, ProgressEvent(type="completed", request_id="r-9"))

    seen = [event async for event in bus.follow_progress("r-9", block_ms=200)]
    assert [(e.type, e.task_id) for e in seen] == [("started", "r-9"), ("completed", "r-9")]
    assert await redis_client.exists("task_progress:c-9") == 0


async def test_a_publishing_failure_is_logged_not_raised() -> None:
    """Progress is best effort: a Redis that cannot be reached does not fail the work."""
    dead = aioredis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    try:
        reporter = StepProgressReporter(Bus(dead, actor=registry.Actor.SCAFFOLDER), label="s")
        message = ProvisionerMessage(server_handle="s", request_id="r-1")
        await reporter.report(message, ProgressEvent(type="started", request_id="r-1"))
    finally:
        await dead.aclose()
