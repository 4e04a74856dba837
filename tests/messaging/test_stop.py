"""`Consumer.stop()` ends a blocking read at once, loses nothing, and still lets in-flight
handlers finish: on real Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis
import redis.asyncio as aioredis

from shared import registry
from shared.contracts import BaseResult, EngineeringMessage
from shared.messaging import Bus, MessageContext
from shared.registry import Actor
from tests.support.messaging import engineering, read_entries
from tests.support.waiting import eventually

ENGINEERING = registry.get("engineering:queue").name
GROUP = "langgraph"
LONG_BLOCK_MS = 60_000
"""A blocking read far longer than any of these tests may take (the test timeout is 120 s)."""


def _unbounded_client(redis_url: str) -> aioredis.Redis:
    """A client without socket timeout: its blocking reads are not shortened."""
    return aioredis.Redis.from_url(redis_url, socket_timeout=None)


async def _blocked_clients(client: aioredis.Redis) -> int:
    info: dict[str, Any] = await client.info("clients")
    return int(info["blocked_clients"])


class _Recorder:
    """A handler that records the task ids it handled, optionally held until released."""

    def __init__(self, *, hold: bool = False) -> None:
        self.handled: list[str] = []
        self.attempts: list[int] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    async def __call__(self, message: EngineeringMessage, ctx: MessageContext) -> BaseResult | None:
        self.started.set()
        await self.release.wait()
        self.handled.append(message.task_id)
        self.attempts.append(ctx.attempt)
        return None


async def test_stop_ends_a_parked_read_long_before_its_block_time(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    """An idle consumer blocked for 60 s returns from run() as soon as it is stopped; its
    cut connection is not reused as it was: the same client keeps working."""
    client = _unbounded_client(redis_url)
    try:
        bus = Bus(client, actor=Actor.LANGGRAPH)
        handler = _Recorder()
        consumer = bus.consumer(ENGINEERING, handler, block_ms=LONG_BLOCK_MS)
        task = asyncio.create_task(consumer.run())
        await eventually(lambda: _count_is(redis_client, 1))
        parked = consumer._parked
        assert parked is not None
        consumer.stop()
        done, _ = await asyncio.wait({task}, timeout=LONG_BLOCK_MS / 2000)
        assert task in done, "run() waited for the blocking read to run out"
        task.result()
        assert parked.cancelled()
        await eventually(lambda: _count_is(redis_client, 0))  # the server let the read go
        # the pool hands out a fresh connection: commands on the same client get their replies
        assert await client.get("nothing-here") is None
        await bus.publish(ENGINEERING, engineering("t-after"))
        again = bus.consumer(ENGINEERING, handler, block_ms=LONG_BLOCK_MS)
        running = asyncio.create_task(again.run())
        await eventually(lambda: handler.handled == ["t-after"])
        again.stop()
        await asyncio.wait_for(running, timeout=30)
    finally:
        await client.aclose()


async def _count_is(client: aioredis.Redis, expected: int) -> bool:
    return await _blocked_clients(client) == expected


async def test_an_entry_delivered_to_a_cancelled_read_stays_pending_and_is_reclaimed(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    """The server hands an entry to the parked XREADGROUP, but the consumer is stopped before
    it reads the reply: the entry stays pending in its name (one delivery) and another
    consumer's reclaim handles it. The client's next commands do not see the stale reply."""
    client = _unbounded_client(redis_url)
    blocking: redis.Redis = redis.Redis.from_url(redis_url)
    try:
        bus = Bus(client, actor=Actor.LANGGRAPH)
        # the fields of a real envelope, to be added without letting this event loop run
        await bus.publish(ENGINEERING, engineering("t-lost?"))
        [(_, fields)] = await read_entries(redis_client, ENGINEERING)
        await redis_client.delete(ENGINEERING)

        first = _Recorder()
        consumer = bus.consumer(ENGINEERING, first, consumer_name="c1", block_ms=LONG_BLOCK_MS)
        task = asyncio.create_task(consumer.run())
        await eventually(lambda: _count_is(redis_client, 1))
        # from here to stop() this loop does not run: the parked read cannot take the reply
        entry_id = blocking.xadd(ENGINEERING, fields)  # type: ignore[arg-type]
        time.sleep(0.2)  # noqa: ASYNC251 - keeps the loop still while the reply reaches c1
        consumer.stop()
        await asyncio.wait_for(task, timeout=30)

        assert first.handled == []
        pending: Any = await redis_client.xpending_range(
            ENGINEERING, GROUP, min="-", max="+", count=10
        )
        assert [(p["message_id"], p["consumer"], p["times_delivered"]) for p in pending] == [
            (entry_id, b"c1", 1)
        ]
        assert await client.get("nothing-here") is None  # not the XREADGROUP reply

        second = _Recorder()
        other = bus.consumer(
            ENGINEERING, second, consumer_name="c2", block_ms=100, reclaim_idle_ms=300
        )
        async with asyncio.timeout(60):
            running = asyncio.create_task(other.run())
            await eventually(lambda: second.handled == ["t-lost?"], timeout_s=30)
            other.stop()
            await running
        assert second.attempts == [2]
        await eventually(lambda: _pending_count(redis_client, 0))
    finally:
        blocking.close()
        await client.aclose()


async def _pending_count(client: aioredis.Redis, expected: int) -> bool:
    summary: Any = await client.xpending(ENGINEERING, GROUP)
    return int(summary["pending"]) == expected


async def test_stop_cancels_the_read_but_waits_for_the_handler_in_flight(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    """With one entry being handled and a slot free, the consumer parks on a blocking read;
    stop() ends the read, but run() returns only once the handler finished, and its
    acknowledgement is sent."""
    client = _unbounded_client(redis_url)
    try:
        bus = Bus(client, actor=Actor.LANGGRAPH)
        handler = _Recorder(hold=True)
        consumer = bus.consumer(ENGINEERING, handler, concurrency=2, block_ms=LONG_BLOCK_MS)
        await bus.publish(ENGINEERING, engineering("t-busy"))
        task = asyncio.create_task(consumer.run())
        await asyncio.wait_for(handler.started.wait(), timeout=30)
        await eventually(lambda: _count_is(redis_client, 1))
        parked = consumer._parked
        assert parked is not None
        consumer.stop()
        await eventually(parked.done)
        assert parked.cancelled()
        await asyncio.sleep(0.2)
        assert not task.done()  # still waiting for the handler
        handler.release.set()
        await asyncio.wait_for(task, timeout=30)
        assert handler.handled == ["t-busy"]
        assert await _pending_count(redis_client, 0)
    finally:
        await client.aclose()


async def test_stop_before_the_read_starts_does_not_block(redis_url: str) -> None:
    """A consumer stopped while it creates its groups never parks on a read."""
    client = _unbounded_client(redis_url)
    try:
        bus = Bus(client, actor=Actor.LANGGRAPH)
        consumer = bus.consumer(ENGINEERING, _Recorder(), block_ms=LONG_BLOCK_MS)
        task = asyncio.create_task(consumer.run())
        await asyncio.sleep(0)  # run() started: the read loop awaits XGROUP CREATE
        consumer.stop()
        done, _ = await asyncio.wait({task}, timeout=LONG_BLOCK_MS / 2000)
        assert task in done
        task.result()
    finally:
        await client.aclose()
