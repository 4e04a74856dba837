"""The wrapper's heartbeat loop stops on cancellation at any instant, even mid-command."""

from __future__ import annotations

import asyncio
import random

import redis.asyncio as aioredis

from services.worker_wrapper.heartbeat import RegistryReporter


async def test_a_heartbeat_cancelled_at_any_instant_stops(redis_client: aioredis.Redis) -> None:
    """Beating without pause (always on the wire), 60 loops cancelled at random all stop."""
    await redis_client.hset("workers:w-beat", mapping={"status": "running"})
    reporter = RegistryReporter(redis_client, "workers:w-beat")
    orphaned: list[str] = []
    rng = random.Random(5)
    for attempt in range(60):
        beating = asyncio.create_task(
            reporter.beat_forever(0.0, orphan_after_s=60, on_orphaned=orphaned.append)
        )
        await asyncio.sleep(rng.uniform(0, 0.01))
        beating.cancel()
        _, stuck = await asyncio.wait([beating], timeout=5)
        assert not stuck, f"heartbeat {attempt} went on after its cancellation"
    assert orphaned == []
    assert float(await redis_client.hget("workers:w-beat", "heartbeat_at") or 0) > 0
