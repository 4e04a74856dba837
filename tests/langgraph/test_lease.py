"""The flow lease: held by a dead process of this host, it is broken at once (a restart after a
crash need not wait out the TTL); held by a live process or another host, it is waited for."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis.asyncio as aioredis

from services.langgraph.keys import lock_key
from services.langgraph.store import FlowStore
from shared.messaging.keys import consumer_host


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else value or ""


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    return process.pid


async def test_a_dead_local_holders_lease_is_broken_at_once(redis_client: aioredis.Redis) -> None:
    """A 30 s lease of a process of this host that is gone: taken within a second."""
    store = FlowStore(redis_client, lock_ttl_ms=30_000)
    dead = f"flow@{consumer_host()}:{_dead_pid()}:0123abcd"
    await redis_client.set(lock_key("t-1"), dead, px=30_000)
    started = time.monotonic()
    async with store.lock("t-1", wait_s=10):
        held_by = _text(await redis_client.get(lock_key("t-1")))
        assert held_by.startswith(f"flow@{consumer_host()}:{os.getpid()}:")
    assert time.monotonic() - started < 5  # not the 30 s of the lease
    assert await redis_client.get(lock_key("t-1")) is None  # released


@pytest.mark.parametrize("where", ["live here", "another host"])
async def test_a_live_or_remote_holders_lease_is_waited_for(
    redis_client: aioredis.Redis, where: str
) -> None:
    """Nobody breaks the lease of a live process, nor of one on another host."""
    store = FlowStore(redis_client, lock_ttl_ms=30_000)
    holder = (
        f"flow@{consumer_host()}:{os.getpid()}:someone"
        if where == "live here"
        else f"flow@elsewhere~0.0:{_dead_pid()}:someone"
    )
    await redis_client.set(lock_key("t-2"), holder, px=30_000)
    with pytest.raises(TimeoutError, match="held by another process"):
        async with store.lock("t-2", wait_s=0.5):
            pass
    assert _text(await redis_client.get(lock_key("t-2"))) == holder


async def test_a_turn_given_back_is_offered_to_the_first_in_line(
    redis_client: aioredis.Redis,
) -> None:
    """The line of a project's integration turn: first come first told; taking the turn
    or ending leaves the line; nobody is told when nobody waits or nothing was released."""
    store = FlowStore(redis_client)
    assert await store.take_turn("p", "t-0", ttl_ms=60_000) == "t-0"
    await store.queue_for_turn("p", "t-2", since=20.0)
    await store.queue_for_turn("p", "t-1", since=10.0)
    await store.queue_for_turn("p", "t-1", since=30.0)  # keeps its first place
    assert not await store.release_turn("p", "t-9")  # not the holder: nobody told
    assert not store.woken.is_set()
    assert await store.release_turn("p", "t-0")
    assert store.woken.is_set()
    assert await store.get_answer("t-1~integrate_turn") == {"turn": "free"}
    assert await store.get_answer("t-2~integrate_turn") is None
    assert await store.take_turn("p", "t-1", ttl_ms=60_000) == "t-1"
    assert await redis_client.zrange("langgraph:turn_queue:p", 0, -1) == [b"t-2"]
    await store.leave_turn_queue("p", "t-2")
    store.woken.clear()
    assert await store.release_turn("p", "t-1")
    assert not store.woken.is_set()  # an empty line
    assert not await redis_client.exists("langgraph:turn_queue:p")
