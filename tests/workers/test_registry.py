"""The registry's set of unfinished workers (`workers:active`): what the monitor reads each
pass, kept right on create, finish, crash and adoption, and never growing with finished tasks."""

from __future__ import annotations

import os
import signal
import time

import redis.asyncio as aioredis

from services.worker_manager.keys import (
    ACTIVE_INDEX,
    REGISTRY_INDEX,
    create_request_key,
    registry_key,
)
from services.worker_manager.registry import WorkerRecord, WorkerRegistry, as_text
from tests.support.waiting import eventually
from tests.support.workers import Client, ManagerRunner


def record_of(worker_id: str, status: str = "starting", **fields: object) -> WorkerRecord:
    """A record as the manager writes it."""
    values: dict[str, object] = {
        "worker_id": worker_id,
        "name": "dev",
        "agent": "claude-code",
        "adapter": "claude-code",
        "runtime": "local",
        "manager_id": "test-manager",
        "status": status,
        "created_at": time.time(),
    }
    values.update(fields)
    return WorkerRecord.model_validate(values)


async def active_ids(redis: aioredis.Redis) -> set[str]:
    """The ids in the active set, as text."""
    return {as_text(i) for i in await redis.smembers(ACTIVE_INDEX)}


async def test_put_and_finish_keep_the_set_right(redis_client: aioredis.Redis) -> None:
    """Written: in the set; stopped, failed (if live) or retired (if warm): out of it; the
    index of every worker keeps them all until their record expires."""
    registry = WorkerRegistry(redis_client)
    for worker_id, status in (("w-run", "starting"), ("w-fail", "running"), ("w-warm", "warm")):
        await registry.put(record_of(worker_id, status))
    assert await active_ids(redis_client) == {"w-run", "w-fail", "w-warm"}
    await registry.finish("w-run", "stopped")
    assert await registry.fail_if_live("w-fail", "boom")
    assert await registry.retire_warm("w-warm", "stopped", error="idle")
    assert await active_ids(redis_client) == set()
    assert await redis_client.scard(REGISTRY_INDEX) == 3
    assert [r.status for r in await registry.all()] == ["stopped", "failed", "stopped"]
    assert await registry.active() == []
    # final states are final: nothing here brings a finished worker back into the set
    assert not await registry.fail_if_live("w-fail", "again")
    assert not await registry.retire_warm("w-run", "failed", error="late")
    assert await active_ids(redis_client) == set()


async def test_put_records_the_create_request_with_the_record(
    redis_client: aioredis.Redis,
) -> None:
    """`put(..., request=...)` writes the create command's request id → worker id (with its
    TTL) in the record's transaction; without it no request key is written."""
    registry = WorkerRegistry(redis_client)
    await registry.put(record_of("w-req"), request=("req-1", 3600))
    assert await redis_client.get(create_request_key("req-1")) == b"w-req"
    assert 3500 < await redis_client.ttl(create_request_key("req-1")) <= 3600
    assert (await registry.get("w-req")) is not None
    assert "w-req" in await active_ids(redis_client)
    await registry.put(record_of("w-plain"))
    assert await redis_client.keys(create_request_key("*")) == [
        create_request_key("req-1").encode()
    ]


async def test_retire_warm_leaves_a_claimed_worker_alone(redis_client: aioredis.Redis) -> None:
    """A warm worker claimed by a create (`starting`) is not the pool's to retire."""
    registry = WorkerRegistry(redis_client)
    await registry.put(record_of("warm-1", "warm"))
    assert await registry.claim_warm("warm-1")
    assert not await registry.retire_warm("warm-1", "failed", error="no heartbeat")
    current = await registry.get("warm-1")
    assert current is not None
    assert (current.status, current.error) == ("starting", "")
    assert await active_ids(redis_client) == {"warm-1"}


async def test_the_set_does_not_grow_with_finished_tasks(redis_client: aioredis.Redis) -> None:
    """200 tasks done and one running: the active read returns one record."""
    registry = WorkerRegistry(redis_client)
    for index in range(200):
        await registry.put(record_of(f"done-{index:03d}"))
        await registry.finish(f"done-{index:03d}", "stopped")
    await registry.put(record_of("live-1", "running"))
    assert [r.worker_id for r in await registry.active()] == ["live-1"]
    assert await redis_client.scard(ACTIVE_INDEX) == 1
    assert await redis_client.scard(REGISTRY_INDEX) == 201


async def test_stray_and_expired_ids_leave_the_set(redis_client: aioredis.Redis) -> None:
    """An id whose record expired, or was finished behind the set's back, is dropped by the
    next read; `reindex` rebuilds the set from the full index (a manager's start)."""
    registry = WorkerRegistry(redis_client)
    await registry.put(record_of("w-gone"))
    await registry.put(record_of("w-done"))
    await registry.put(record_of("w-live", "busy"))
    await redis_client.delete(registry_key("w-gone"))  # expired
    await redis_client.hset(registry_key("w-done"), "status", "stopped")  # an older writer
    assert [r.worker_id for r in await registry.active()] == ["w-live"]
    assert await active_ids(redis_client) == {"w-live"}
    await redis_client.delete(ACTIVE_INDEX)  # a registry written before the set existed
    assert await registry.active() == []
    assert await registry.reindex() == 1
    assert await active_ids(redis_client) == {"w-live"}
    assert {r.worker_id for r in await registry.all()} == {"w-done", "w-live"}


async def test_create_delete_and_crash_through_the_manager(
    manager: ManagerRunner, client: Client
) -> None:
    """A created worker is in the set; a deleted one and a crashed one (kill -9, failed by
    the monitor) are not."""
    await manager.start()
    first = await client.create(name="one")
    second = await client.create(name="two")
    assert first.success, first.error
    assert second.success, second.error
    assert await active_ids(client.redis) == {first.worker_id, second.worker_id}
    assert (await client.delete(first.worker_id)).success
    assert await active_ids(client.redis) == {second.worker_id}
    crashed = await client.record(second.worker_id)
    os.kill(int(crashed.runtime_ref.split(":", 1)[0]), signal.SIGKILL)
    await client.wait_status(second.worker_id, "failed", timeout_s=30)
    assert await active_ids(client.redis) == set()
    assert {r.worker_id for r in await client.registry.all()} == {
        first.worker_id,
        second.worker_id,
    }


async def test_a_restarted_manager_rebuilds_the_set_and_adopts(
    manager: ManagerRunner, client: Client
) -> None:
    """A manager started over a registry without the set (an older version's, or a lost
    key) rebuilds it from the index, adopts the live worker, and its monitor watches it: a
    crash afterwards is still noticed."""
    await manager.start()
    created = await client.create()
    assert created.success, created.error
    await manager.stop()
    await client.redis.delete(ACTIVE_INDEX)
    await manager.start()

    async def rebuilt() -> bool:
        return await active_ids(client.redis) == {created.worker_id}

    await eventually(rebuilt, what="the active set rebuilt on start")
    record = await client.record(created.worker_id)
    assert record.status == "running"
    answer = await client.send(created.worker_id, "still there?")
    assert answer.success, answer.error
    os.kill(int(record.runtime_ref.split(":", 1)[0]), signal.SIGKILL)
    await client.wait_status(created.worker_id, "failed", timeout_s=30)
    assert await active_ids(client.redis) == set()
