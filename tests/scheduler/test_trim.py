"""The trim job on real Redis streams with real consumer groups."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from services.scheduler.deps import SchedulerDeps
from services.scheduler.jobs import trim_streams
from services.scheduler.jobs.streams import text
from services.scheduler.loop import Tick
from shared import registry
from tests.support.scheduler import stream_entries

TICK = Tick(job="trim_streams", number=1, interval_s=1.0)
QUEUE = registry.get("provisioner:queue")


async def fill(redis: aioredis.Redis, count: int) -> list[str]:
    """Add `count` entries to the queue; returns their ids."""
    ids: list[str] = []
    for n in range(count):
        ids.append(text(await redis.xadd(QUEUE.name, {"n": str(n)})))
    return ids


async def test_acknowledged_entries_are_trimmed_pending_and_undelivered_kept(
    deps: SchedulerDeps, redis_client: aioredis.Redis
) -> None:
    """5 entries: 2 read and acked, 1 read and pending, 2 never delivered → 3 remain."""
    ids = await fill(redis_client, 5)
    await redis_client.xgroup_create(QUEUE.name, QUEUE.consumer_group, id="0")
    await redis_client.xreadgroup(QUEUE.consumer_group, "c1", {QUEUE.name: ">"}, count=3)
    await redis_client.xack(QUEUE.name, QUEUE.consumer_group, ids[0], ids[1])
    await trim_streams(deps, TICK)
    left = [entry_id for entry_id, _ in await stream_entries(redis_client, QUEUE.name)]
    assert left == ids[2:]


async def test_a_queue_without_its_consumer_group_is_not_trimmed(
    deps: SchedulerDeps, redis_client: aioredis.Redis
) -> None:
    """Entries wait for a consumer that has not started yet."""
    await fill(redis_client, 3)
    await trim_streams(deps, TICK)
    assert await redis_client.xlen(QUEUE.name) == 3


async def test_a_fully_acknowledged_queue_is_emptied(
    deps: SchedulerDeps, redis_client: aioredis.Redis
) -> None:
    """Everything read and acknowledged: nothing is left."""
    ids = await fill(redis_client, 4)
    await redis_client.xgroup_create(QUEUE.name, QUEUE.consumer_group, id="0")
    await redis_client.xreadgroup(QUEUE.consumer_group, "c1", {QUEUE.name: ">"})
    await redis_client.xack(QUEUE.name, QUEUE.consumer_group, *ids)
    await trim_streams(deps, TICK)
    assert await redis_client.xlen(QUEUE.name) == 0


async def test_dead_letters_older_than_the_retention_are_trimmed(
    deps: SchedulerDeps, redis_client: aioredis.Redis
) -> None:
    """An old dead letter goes, a recent one stays."""
    dead = registry.dead_letter_stream(QUEUE.name)
    old_ms = int((time.time() - deps.settings.dead_letter_retention_s - 60) * 1000)
    await redis_client.xadd(dead, {"dlq_reason": "exhausted"}, id=f"{old_ms}-0")
    recent = text(await redis_client.xadd(dead, {"dlq_reason": "exhausted"}))
    await trim_streams(deps, TICK)
    assert [entry_id for entry_id, _ in await stream_entries(redis_client, dead)] == [recent]
