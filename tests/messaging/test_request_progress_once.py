"""Request/reply, progress streams and idempotent effects on real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from shared import registry
from shared.contracts import (
    DeleteWorkerCommand,
    DeleteWorkerResponse,
    ProgressEvent,
)
from shared.messaging import Bus, MessageContext, RequestTimeoutError, Retry
from shared.registry import Actor
from tests.support.messaging import Running, read_entries

COMMANDS = registry.get("worker:commands").name
RESPONSES = registry.get("worker:responses").name


async def test_request_is_answered_by_matching_request_id(
    bus: Bus, redis_client: aioredis.Redis
) -> None:
    """The requester gets the reply with its request_id, not another one; the reply is consumed."""
    manager = Bus(redis_client, actor=Actor.WORKER_MANAGER, metrics=bus.metrics)

    async def handle(command: DeleteWorkerCommand, ctx: MessageContext) -> None:
        await manager.publish(
            RESPONSES, DeleteWorkerResponse(request_id="someone-else", success=False)
        )
        await manager.publish(
            RESPONSES, DeleteWorkerResponse(request_id=command.request_id, success=True)
        )

    async with Running(manager.consumer(COMMANDS, handle, block_ms=100)):
        reply = await bus.request(
            COMMANDS,
            DeleteWorkerCommand(request_id="req-1", worker_id="w-1"),
            reply_stream=RESPONSES,
            timeout_s=5,
        )
    assert reply == DeleteWorkerResponse(request_id="req-1", success=True)
    left = [fields["payload"] for _, fields in await read_entries(redis_client, RESPONSES)]
    assert len(left) == 1
    assert "someone-else" in left[0]


async def test_request_times_out_clearly(bus: Bus) -> None:
    """With nobody answering, request raises RequestTimeoutError after the timeout."""
    with pytest.raises(RequestTimeoutError):
        await bus.request(
            COMMANDS,
            DeleteWorkerCommand(request_id="req-2", worker_id="w"),
            reply_stream=RESPONSES,
            timeout_s=0.3,
        )


async def test_reply_that_arrived_before_waiting_is_still_found(bus: Bus) -> None:
    """A requester that restarts finds the reply published while it was away."""
    entry_id = await bus.publish(COMMANDS, DeleteWorkerCommand(request_id="req-3", worker_id="w"))
    await bus.publish(RESPONSES, DeleteWorkerResponse(request_id="req-3", success=True))
    reply = await bus.wait_reply(RESPONSES, "req-3", since_id=entry_id, timeout_s=1)
    assert reply == DeleteWorkerResponse(request_id="req-3", success=True)


async def test_progress_is_capped_expiring_and_followed_to_the_terminal_event(
    bus: Bus, redis_client: aioredis.Redis
) -> None:
    """A follower from the start sees every event and stops after `completed`; stream expires."""
    await bus.progress("t-1", ProgressEvent(type="started", request_id="r", task_id="t-1"))

    async def later() -> None:
        await asyncio.sleep(0.1)
        await bus.progress("t-1", ProgressEvent(type="progress", request_id="r", progress_pct=50))
        await bus.progress("t-1", ProgressEvent(type="completed", request_id="r"))
        await bus.progress("t-1", ProgressEvent(type="progress", request_id="r"))

    writer = asyncio.create_task(later())
    seen = [event.type async for event in bus.follow_progress("t-1", block_ms=200)]
    await writer
    assert seen == ["started", "progress", "completed"]
    ttl = await redis_client.ttl("task_progress:t-1")
    assert 0 < ttl <= 7 * 86400


async def test_follow_progress_from_now_skips_history(bus: Bus) -> None:
    """from_start=False yields only events published after the call."""
    await bus.progress("t-2", ProgressEvent(type="started", request_id="r"))
    follower = bus.follow_progress("t-2", from_start=False, block_ms=200)
    first = asyncio.ensure_future(anext(follower))
    await asyncio.sleep(0.05)
    await bus.progress("t-2", ProgressEvent(type="failed", request_id="r", error="boom"))
    event = await asyncio.wait_for(first, 5)
    assert (event.type, event.error) == ("failed", "boom")


async def test_once_runs_the_effect_once_and_again_after_a_failure(bus: Bus) -> None:
    """A failed effect frees its key; a done one is skipped; a running one asks for a retry."""
    effects: list[str] = []

    async def effect() -> str:
        effects.append("done")
        return "value"

    async def crashing() -> None:
        async with bus.once("req-9") as first:
            assert first
            raise RuntimeError("crash in the effect")

    with pytest.raises(RuntimeError):
        await crashing()
    assert await bus.run_once("req-9", effect) == "value"
    assert await bus.run_once("req-9", effect) is None
    assert effects == ["done"]
    async with bus.once("req-10") as first:
        assert first
        with pytest.raises(Retry):
            async with bus.once("req-10"):
                pass
