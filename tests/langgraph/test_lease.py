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
