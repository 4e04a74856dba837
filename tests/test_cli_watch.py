"""`orchestrator task watch`'s follower: it ends on the terminal event, or at its timeout even
while parked in a blocking read of the progress stream."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from services.cli.watch import _follow
from shared import registry
from shared.contracts import ProgressEvent
from shared.messaging import Bus


async def test_watch_ends_on_the_terminal_event(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    """Events published while it waits are shown; `completed` ends it with True."""
    bus = Bus(redis_client, actor=registry.Actor.LANGGRAPH)
    following = asyncio.create_task(_follow(redis_url, "t-watch", timeout_s=30))
    await asyncio.sleep(0.2)
    await bus.progress("t-watch", ProgressEvent(type="progress", request_id="r", progress_pct=40))
    await bus.progress("t-watch", ProgressEvent(type="completed", request_id="r"))
    assert await asyncio.wait_for(following, timeout=20) is True


async def test_watch_gives_up_at_its_timeout(redis_url: str, redis_client: aioredis.Redis) -> None:
    """A task without events: False after the timeout, not after the next event."""
    started = time.monotonic()
    assert await _follow(redis_url, "t-silent", timeout_s=0.5) is False
    assert time.monotonic() - started < 10  # the 0.5 s timeout, not a wait for ever
