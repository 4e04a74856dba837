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


async def test_a_bound_wrapper_starts_on_go_in_one_script(redis_client: aioredis.Redis) -> None:
    """`run_when_released`: nothing there yet → `wait` (nothing written); `go` → `running`
    written and pushed onto the started list; a word other than `go` → `refused`; a record
    the manager ended meanwhile → `not_live` (never resurrected); `popped` skips the pop."""
    key, ready, started = "workers:w-rel", "workers:bind:w-rel", "workers:started:w-rel"
    await redis_client.delete(key, ready, started)
    await redis_client.hset(key, mapping={"status": "starting"})
    reporter = RegistryReporter(redis_client, key)
    assert await reporter.run_when_released(ready, started) == "wait"
    assert await redis_client.hget(key, "status") == b"starting"
    assert await redis_client.llen(started) == 0

    await redis_client.rpush(ready, "go")
    assert await reporter.run_when_released(ready, started) == "running"
    assert await redis_client.hget(key, "status") == b"running"
    assert float(await redis_client.hget(key, "heartbeat_at") or 0) > 0
    assert await redis_client.lrange(started, 0, -1) == [b"running"]
    assert 0 < await redis_client.ttl(started) <= 60
    assert await redis_client.llen(ready) == 0

    await redis_client.hset(key, mapping={"status": "starting"})
    await redis_client.rpush(ready, "stop")
    assert await reporter.run_when_released(ready, started) == "refused"
    assert await redis_client.hget(key, "status") == b"starting"

    await redis_client.hset(key, mapping={"status": "stopped"})
    await redis_client.rpush(ready, "go")
    assert await reporter.run_when_released(ready, started) == "not_live"
    assert await redis_client.hget(key, "status") == b"stopped"

    await redis_client.hset(key, mapping={"status": "starting"})
    await redis_client.delete(started)
    assert await reporter.run_when_released(ready, popped=True) == "running"
    assert await redis_client.exists(started) == 0  # no started list named: none written
    await redis_client.delete(key, ready, started)


async def test_a_first_beat_can_wait_its_interval(redis_client: aioredis.Redis) -> None:
    """`first_after_s`: a status just reported is a beat already; the loop waits first."""
    await redis_client.hset("workers:w-late", mapping={"status": "running"})
    await redis_client.hdel("workers:w-late", "heartbeat_at")
    reporter = RegistryReporter(redis_client, "workers:w-late")
    beating = asyncio.create_task(
        reporter.beat_forever(
            60.0, orphan_after_s=60, on_orphaned=lambda _: None, first_after_s=60.0
        )
    )
    await asyncio.sleep(0.2)
    assert await redis_client.hget("workers:w-late", "heartbeat_at") is None
    beating.cancel()
    await asyncio.wait([beating], timeout=5)
    await redis_client.delete("workers:w-late")
