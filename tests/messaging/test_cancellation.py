"""Cancelling a consumer stops it, even when the Redis client swallows the cancellation."""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as aioredis

from shared.contracts import BaseResult, EngineeringMessage
from shared.messaging import Bus, MessageContext
from shared.messaging.cancel import raise_if_cancelling
from shared.registry import Actor


async def _nothing(_message: EngineeringMessage, _ctx: MessageContext) -> BaseResult | None:
    return None


async def test_cancelled_consumers_stop_during_blocking_reads(redis_url: str) -> None:
    """30 consumers cancelled mid-XREADGROUP (timed at random) all stop within 5 s."""
    client: aioredis.Redis = aioredis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        bus = Bus(client, actor=Actor.LANGGRAPH)
        for round_ in range(30):
            consumer = bus.consumer("engineering:queue", _nothing, consumer_name=f"c{round_}")
            task = asyncio.create_task(consumer.run())
            await asyncio.sleep(0.05 + (round_ % 7) * 0.013)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=5)
            assert task in done, f"consumer {round_} kept running after cancel()"
    finally:
        await client.aclose()


async def test_a_swallowed_cancellation_is_still_seen() -> None:
    """A loop that checks `raise_if_cancelling` stops although the CancelledError was eaten."""
    turns = 0

    async def loop() -> None:
        nonlocal turns
        while True:
            raise_if_cancelling()
            turns += 1
            with contextlib.suppress(asyncio.CancelledError):  # what a client library may do
                await asyncio.sleep(0.01)

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.05)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert task in done
    assert task.cancelled()
