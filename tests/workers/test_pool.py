"""The warm pool end to end: real Redis, real wrapper processes, the fake Claude CLI."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import psutil
import pytest

from services.worker_manager.keys import bind_key
from services.worker_manager.registry import WorkerRecord, WorkerRegistry
from tests.support.waiting import eventually
from tests.support.workers import Client, ManagerRunner
from tests.workers.helpers import git, make_repo_with_remote

POOL = {"size": 2, "prewarm": ["claude-code/developer"], "idle_s": 600.0}


def pid_of(ref: str) -> int:
    """The wrapper pid of a local runtime reference."""
    return int(ref.split(":", 1)[0])


def running(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def warm_records(client: Client) -> list[WorkerRecord]:
    """The records of warm (ready) workers."""
    return [r for r in await WorkerRegistry(client.redis).all() if r.status == "warm"]


async def full_pool(client: Client, size: int = 2) -> list[WorkerRecord]:
    """Wait until exactly `size` warm workers are ready; answer them."""

    async def check() -> list[WorkerRecord]:
        records = await warm_records(client)
        return records if len(records) == size else []

    try:
        found = await eventually(check, timeout_s=90, what=f"{size} warm workers")
    except TimeoutError:
        statuses = [(r.worker_id, r.status) for r in await WorkerRegistry(client.redis).all()]
        raise AssertionError(f"never {size} warm workers: {statuses}") from None
    return found


async def test_create_binds_a_warm_worker_and_never_reuses_it(
    manager: ManagerRunner, client: Client, tmp_path: Any
) -> None:
    """A create takes a warm worker, binds it (workspace, branch, env), refills the pool;
    the worker serves its one task and is never handed to another, even once deleted."""
    await manager.start(pool=POOL)
    warm = await full_pool(client)
    _, remote = make_repo_with_remote(tmp_path)
    created = await client.create(
        env_vars={"PROJECT_TOKEN": "s3cret-value-1"},
        context={"repo_url": str(remote), "branch": "feature/x", "owner": "u1"},
    )
    assert created.success, created.error
    worker_id = created.worker_id
    assert worker_id in {r.worker_id for r in warm}
    record = await client.record(worker_id)
    assert (record.status, record.owner, record.adapter) == ("running", "u1", "claude-code")
    assert git(tmp_path / "workers" / worker_id / "workspace", "branch", "--show-current") == (
        "feature/x"
    )
    # the binding left Redis at once and never went through argv
    assert await client.redis.exists(bind_key(worker_id)) == 0
    proc = psutil.Process(pid_of(record.runtime_ref))
    assert "s3cret-value-1" not in " ".join(proc.cmdline())
    answer = await client.send(worker_id, "hello")
    assert answer.success, answer.error
    assert answer.response.startswith("answer to: hello")
    refilled = await full_pool(client)
    assert worker_id not in {r.worker_id for r in refilled}
    assert (await client.delete(worker_id)).success
    assert not running(proc.pid)
    taken = set()
    for _ in range(3):  # more creates than the pool holds: none gets the first worker back
        again = await client.create()
        assert again.success, again.error
        taken.add(again.worker_id)
    assert worker_id not in taken
    assert len(taken) == 3
    assert (await client.record(worker_id)).status == "stopped"
    for other in taken:
        assert (await client.delete(other)).success


async def test_a_crashed_warm_worker_is_replaced(manager: ManagerRunner, client: Client) -> None:
    """kill -9 of a warm worker: its record is failed and the pool starts another."""
    await manager.start(pool=POOL)
    victim = (await full_pool(client))[0]
    os.kill(pid_of(victim.runtime_ref), signal.SIGKILL)

    async def replaced() -> bool:
        current = await client.record(victim.worker_id)
        ready = {r.worker_id for r in await warm_records(client)}
        return current.status == "failed" and len(ready) == 2 and victim.worker_id not in ready

    await eventually(replaced, timeout_s=30, what="the dead warm worker replaced")
    assert "died" in (await client.record(victim.worker_id)).error
    created = await client.create()  # and the pool still serves
    assert created.success, created.error
    assert created.worker_id != victim.worker_id
    assert (await client.delete(created.worker_id)).success


@pytest.mark.slow
async def test_a_restarted_manager_adopts_its_warm_workers(
    manager: ManagerRunner, client: Client
) -> None:
    """Warm workers outlive a manager restart; the next run uses them instead of starting
    new ones, and drops the ones whose process died meanwhile."""
    await manager.start(pool=POOL)
    first, second = await full_pool(client)
    await manager.stop()
    os.kill(pid_of(second.runtime_ref), signal.SIGKILL)

    async def killed() -> bool:  # a loaded machine may take a while to end it
        return not running(pid_of(second.runtime_ref))

    await eventually(killed, what="the killed warm worker gone")
    await manager.start(pool=POOL)
    assert (await client.record(second.worker_id)).status == "failed"
    assert running(pid_of(first.runtime_ref))
    assert (await client.record(first.worker_id)).status == "warm"
    created = await client.create()
    assert created.success, created.error
    assert created.worker_id == first.worker_id  # the adopted one, the only one ready
    assert (await client.delete(created.worker_id)).success
    await full_pool(client)


async def test_an_idle_pool_shrinks_and_grows_back(manager: ManagerRunner, client: Client) -> None:
    """A pool nobody used for `idle_s` stops its warm workers; the next create fills it."""
    await manager.start(pool={"size": 1, "prewarm": [], "idle_s": 1.0})
    assert await warm_records(client) == []  # nothing prewarmed
    created = await client.create()
    assert created.success, created.error
    (warm,) = await full_pool(client, size=1)
    assert (await client.delete(created.worker_id)).success

    async def shrunk() -> bool:
        return await warm_records(client) == [] and not running(pid_of(warm.runtime_ref))

    await eventually(shrunk, timeout_s=15, what="the idle pool shrunk")
    assert (await client.record(warm.worker_id)).status == "stopped"
    again = await client.create()
    assert again.success, again.error
    assert again.worker_id != warm.worker_id
    assert (await client.delete(again.worker_id)).success


async def test_a_bad_create_does_not_consume_a_warm_worker(
    manager: ManagerRunner, client: Client
) -> None:
    """A create refused for its input leaves the pool as it was."""
    await manager.start(pool=POOL)
    before = {r.worker_id for r in await full_pool(client)}
    refused = await client.create(env_vars={"BAD=NAME": "x"})
    assert not refused.success
    assert "invalid environment variable name" in refused.error
    assert {r.worker_id for r in await warm_records(client)} == before


async def test_a_dead_warm_worker_is_not_handed_out(manager: ManagerRunner, client: Client) -> None:
    """A warm worker killed just before a create: the create gets a live one."""
    await manager.start(pool={**POOL, "size": 1}, monitor_interval_s=30.0)
    (victim,) = await full_pool(client, size=1)
    os.kill(pid_of(victim.runtime_ref), signal.SIGKILL)
    await asyncio.sleep(0.2)
    created = await client.create()
    assert created.success, created.error
    assert created.worker_id != victim.worker_id
    assert (await client.record(victim.worker_id)).status == "failed"
    answer = await client.send(created.worker_id, "hi")
    assert answer.success, answer.error
    assert (await client.delete(created.worker_id)).success
