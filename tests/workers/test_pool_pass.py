"""The pool's background pass against a create, and a warm worker's priority and heartbeat,
on a manager built in the test (real Redis, real wrapper processes)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
import redis.asyncio as aioredis

from services.worker_manager import cpu_priority
from services.worker_manager.api_keys import WorkerApiKeys
from services.worker_manager.local_runtime import LocalProcessRuntime
from services.worker_manager.manager import WorkerManager
from services.worker_manager.registry import WorkerRecord
from shared import registry
from shared.messaging import Bus
from tests.support.waiting import eventually
from tests.support.workers import fast_settings

KEY = ("claude-code", "developer")


@pytest.fixture
async def pool_manager(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[WorkerManager]:
    """A manager (no command consumer, no monitor loop) whose pool holds one warm worker;
    every worker process is gone after the test."""
    data_dir = (tmp_path / "workers").resolve()
    data_dir.mkdir()
    settings = fast_settings(data_dir, pool={"size": 1, "prewarm": [], "heartbeat_s": 7.0})
    runtime = LocalProcessRuntime(data_dir)
    manager = WorkerManager(
        settings=settings,
        bus=Bus(redis_client, actor=registry.Actor.WORKER_MANAGER),
        redis=redis_client,
        runtime=runtime,
        redis_url=redis_url,
        api_keys=WorkerApiKeys(redis_client, None),
    )
    try:
        yield manager
    finally:
        for task in list(manager.pool._tasks):
            task.cancel()
        await asyncio.gather(*manager.pool._tasks, return_exceptions=True)
        for ref in (await runtime.list_owned(settings.manager_id)).values():
            await runtime.stop(ref, grace_s=0)


async def warm_one(manager: WorkerManager) -> WorkerRecord:
    """Fill the pool; answer its warm worker's record."""
    manager.pool.used_at[KEY] = time.monotonic()
    manager.pool.fill(KEY)

    async def ready() -> WorkerRecord | None:
        queue = manager.pool.ready.get(KEY) or []
        return await manager.registry.get(queue[0]) if queue else None

    found = await eventually(ready, timeout_s=60, what="a warm worker")
    assert found is not None
    return found


def alive(ref: str) -> bool:
    """True while the wrapper of a local reference runs."""
    try:
        return psutil.Process(int(ref.split(":", 1)[0])).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def test_the_pass_does_not_drop_a_worker_a_create_just_claimed(
    pool_manager: WorkerManager,
) -> None:
    """The pass read a warm worker that looked silent; a create claimed it before the pass
    acted: the pass leaves it alone (its process runs, its record is the create's)."""
    seen = await warm_one(pool_manager)
    stale = seen.model_copy(update={"heartbeat_at": time.time() - 3600})
    claimed = await pool_manager.pool.take(*KEY)
    assert claimed is not None
    assert claimed.worker_id == seen.worker_id
    await pool_manager.pool.check([stale])
    current = await pool_manager.registry.get(seen.worker_id)
    assert current is not None
    assert (current.status, current.error) == ("starting", "")
    assert alive(seen.runtime_ref)


async def test_the_pass_drops_a_silent_warm_worker_nobody_claimed(
    pool_manager: WorkerManager,
) -> None:
    """The same silent worker, unclaimed: failed, its process stopped, the pool refilled."""
    seen = await warm_one(pool_manager)
    stale = seen.model_copy(update={"heartbeat_at": time.time() - 3600})
    await pool_manager.pool.check([stale])
    current = await pool_manager.registry.get(seen.worker_id)
    assert current is not None
    assert current.status == "failed"
    assert "no heartbeat" in current.error
    assert not alive(seen.runtime_ref)
    assert seen.worker_id not in pool_manager.pool.ready.get(KEY, [])
    assert pool_manager.pool.starting.get(KEY) == 1  # its replacement


async def test_the_background_pass_runs_every_background_s(pool_manager: WorkerManager) -> None:
    """`check_if_due` runs the pass on its first call, then not again within
    `pool.background_s` (10 s by default)."""
    assert pool_manager.settings.pool.background_s == 10.0
    await pool_manager.pool.check_if_due([])
    assert pool_manager.pool._checked_at is not None
    first = pool_manager.pool._checked_at
    await pool_manager.pool.check_if_due([])
    assert pool_manager.pool._checked_at == first


async def test_a_warm_worker_beats_at_the_pool_rate(pool_manager: WorkerManager) -> None:
    """A warm wrapper gets `pool.heartbeat_s` (capped at a third of the timeout), not the
    bound workers' rate."""
    seen = await warm_one(pool_manager)
    environ = psutil.Process(int(seen.runtime_ref.split(":", 1)[0])).environ()
    assert environ["WORKER_HEARTBEAT_INTERVAL_S"] == "7.0"
    assert pool_manager.settings.heartbeat_interval_s == 0.5


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a priority back needs root")
async def test_a_warm_worker_runs_at_the_lowest_priority_until_claimed(
    pool_manager: WorkerManager,
) -> None:
    """Warm: nice 19 (and its autogroup's, where autogroups apply); claimed: the manager's."""
    seen = await warm_one(pool_manager)
    pid = int(seen.runtime_ref.split(":", 1)[0])
    assert set(cpu_priority.thread_nices(pid).values()) == {cpu_priority.IDLE_NICE}
    if cpu_priority.uses_autogroup(pid):
        assert cpu_priority.autogroup_nice(pid) == cpu_priority.IDLE_NICE
    claimed = await pool_manager.pool.take(*KEY)
    assert claimed is not None
    assert claimed.worker_id == seen.worker_id
    normal = os.getpriority(os.PRIO_PROCESS, 0)
    assert set(cpu_priority.thread_nices(pid).values()) == {normal}
    if cpu_priority.uses_autogroup(pid):
        assert cpu_priority.autogroup_nice(pid) == cpu_priority.normal_autogroup_nice()
