"""The warm pool end to end: real Redis, real wrapper processes, the fake Claude CLI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

import psutil
import pytest

from services.worker_manager import pool as pool_module
from services.worker_manager.keys import bind_key, registry_key
from services.worker_manager.mirrors import RepositoryMirrors
from services.worker_manager.registry import WorkerRecord, WorkerRegistry
from services.worker_wrapper.main import run_wrapper
from services.worker_wrapper.settings import WrapperSettings
from tests.support.waiting import eventually
from tests.support.workers import Client, ManagerRunner
from tests.workers.helpers import exists, git, make_repo_with_remote

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

    async def dropped() -> bool:  # the run adopts once started (its start does not wait)
        return (await client.record(second.worker_id)).status == "failed"

    await eventually(dropped, what="the dead warm worker dropped")
    assert running(pid_of(first.runtime_ref))
    assert (await client.record(first.worker_id)).status == "warm"
    created = await client.create()
    assert created.success, created.error
    assert created.worker_id == first.worker_id  # the adopted one, the only one ready
    assert (await client.delete(created.worker_id)).success
    await full_pool(client)


async def test_a_stopped_manager_starts_no_more_warm_workers(
    manager: ManagerRunner, client: Client
) -> None:
    """Stopping the manager cancels its warm starts in flight: none lives on to refill the
    pool of a run that ended when the next run drops the worker it was waiting for."""
    registry = WorkerRegistry(client.redis)
    await manager.start(pool={**POOL, "size": 1})

    async def warming() -> WorkerRecord | None:
        found = [r for r in await registry.all() if r.status == "warming" and r.runtime_ref]
        return found[0] if found else None

    record = await eventually(warming, what="a warm worker starting")
    assert record is not None
    await manager.stop()
    # what the next run's adopt does to a worker it did not see become warm
    assert await registry.retire_warm(record.worker_id, "failed", error="not adopted")
    await asyncio.sleep(2.0)  # a start outliving its run polls the record within 0.25 s
    assert [r.worker_id for r in await registry.all()] == [record.worker_id]


async def test_an_idle_pool_shrinks_and_grows_back(manager: ManagerRunner, client: Client) -> None:
    """A pool nobody used for `idle_s` stops its warm workers; the next create fills it."""
    await manager.start(pool={"size": 1, "prewarm": [], "idle_s": 1.0})
    assert await warm_records(client) == []  # nothing prewarmed
    created = await client.create()
    assert created.success, created.error
    (warm,) = await full_pool(client, size=1)
    warm_input = f"worker:{warm.worker_id}:input"
    assert await client.redis.exists(warm_input)  # its consumer group, made while warm
    assert (await client.delete(created.worker_id)).success

    async def shrunk() -> bool:
        return (
            await warm_records(client) == []
            and not running(pid_of(warm.runtime_ref))
            and not await client.redis.exists(warm_input)  # never served: deleted
        )

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


async def test_a_burst_larger_than_the_pool_does_not_wait_for_the_refill(
    manager: ManagerRunner, client: Client
) -> None:
    """With one warm worker and four creates at once, one create takes the warm worker and
    the three others start their own at once (as without a pool); the pool refills."""
    await manager.start(pool={**POOL, "size": 1}, spawn_concurrency=1)
    (warm,) = await full_pool(client, size=1)
    created = await asyncio.gather(*(client.create(name=f"b{i}") for i in range(4)))
    assert all(c.success for c in created), [c.error for c in created]
    ids = [c.worker_id for c in created]
    assert len(set(ids)) == 4
    assert [i for i in ids if i.startswith("warm-")] == [warm.worker_id]
    assert len([i for i in ids if i.split("-")[0] in {"b0", "b1", "b2", "b3"}]) == 3
    for worker_id in ids:
        assert (await client.record(worker_id)).status == "running"
    (refill,) = await full_pool(client, size=1)
    assert refill.worker_id not in ids
    for worker_id in ids:
        assert (await client.delete(worker_id)).success


async def test_a_released_wrapper_reports_running_only_after_go(
    redis_client: Any, redis_url: str, tmp_path: Any
) -> None:
    """A bound warm wrapper (`WORKER_READY_KEY`) stays `starting` until the manager pushes
    `go` (its workspace is ready); anything else there makes it exit without serving."""
    registry = WorkerRegistry(redis_client)
    for worker_id, word in (("w-go", b"go"), ("w-no", b"stop")):
        record = WorkerRecord(
            worker_id=worker_id,
            name="w",
            agent="claude-code",
            adapter="builtin",
            runtime="local",
            manager_id="test-manager",
            status="starting",
            workspace=str(tmp_path / worker_id),
            session_dir=str(tmp_path / f"{worker_id}-session"),
        )
        await registry.put(record)
        settings = WrapperSettings(
            id=worker_id,
            redis_url=redis_url,
            registry_key=registry_key(worker_id),
            workspace=tmp_path / worker_id,
            session_dir=tmp_path / f"{worker_id}-session",
            ready_key=bind_key(worker_id),
            heartbeat_interval_s=0.2,
        )
        serving = asyncio.create_task(run_wrapper(settings))
        await asyncio.sleep(0.5)
        current = await registry.get(worker_id)
        assert current is not None
        assert current.status == "starting"
        assert not serving.done()
        await redis_client.rpush(bind_key(worker_id), word)
        if word == b"go":

            async def running_now(worker_id: str = worker_id) -> bool:
                found = await registry.get(worker_id)
                return found is not None and found.status == "running"

            await eventually(running_now, timeout_s=10, what="running after go")
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
        else:
            await asyncio.wait_for(serving, timeout=10)  # returns: never served
            current = await registry.get(worker_id)
            assert current is not None
            assert current.status == "starting"


async def test_a_warm_worker_whose_workspace_fails_is_stopped_not_reused(
    manager: ManagerRunner, client: Client, tmp_path: Any
) -> None:
    """A clone that fails while the warm worker is bound fails the create with the clone's
    error; the claimed worker is stopped and failed (never back in the pool); the pool
    refills."""
    await manager.start(pool={**POOL, "size": 1})
    (warm,) = await full_pool(client, size=1)
    missing = tmp_path / "nowhere.git"
    refused = await client.create(context={"repo_url": str(missing), "branch": "b"})
    assert not refused.success
    assert "nowhere.git" in refused.error
    record = await client.record(warm.worker_id)
    assert record.status == "failed"

    async def gone() -> bool:
        return not running(pid_of(warm.runtime_ref))

    await eventually(gone, what="the claimed worker stopped")
    (refill,) = await full_pool(client, size=1)
    assert refill.worker_id != warm.worker_id


async def test_the_next_clone_is_prepared_and_brought_up_to_date(
    manager: ManagerRunner, client: Client, tmp_path: Any
) -> None:
    """After a create of a repository, its next clone is prepared in the background; the
    next create takes it, sees what was pushed meanwhile, starts its branch from the base
    as it is now, and shares no file with the mirror."""
    await manager.start(pool={**POOL, "size": 1})
    await full_pool(client, size=1)
    clone, remote = make_repo_with_remote(tmp_path)
    context = {"repo_url": str(remote), "base_branch": "main"}
    first = await client.create(context={**context, "branch": "task/1"})
    assert first.success, first.error
    mirrors = RepositoryMirrors(manager.data_dir / "mirrors")
    prepared = mirrors.prepared_path(str(remote))

    async def ready() -> bool:
        return await asyncio.to_thread(prepared.is_dir)

    await eventually(ready, timeout_s=30, what="the next clone prepared")
    marker = await asyncio.to_thread(_mark_prepared, prepared)
    await asyncio.to_thread(_push_file, clone, "later.txt")
    await full_pool(client, size=1)
    second = await client.create(context={**context, "branch": "task/2"})
    assert second.success, second.error
    workspace = manager.data_dir / second.worker_id / "workspace"
    assert await asyncio.to_thread(exists, workspace / ".git" / marker)  # the prepared one
    assert await asyncio.to_thread(exists, workspace / "later.txt")
    assert git(workspace, "branch", "--show-current") == "task/2"
    assert git(workspace, "rev-parse", "HEAD") == git(clone, "rev-parse", "HEAD")
    assert git(workspace, "remote", "get-url", "origin") == str(remote)
    mirror = mirrors.path_of(str(remote))
    assert not await asyncio.to_thread(_shared_inodes, mirror / "objects", workspace / ".git")
    await eventually(ready, timeout_s=30, what="the clone after it prepared")
    for worker_id in (first.worker_id, second.worker_id):
        assert (await client.delete(worker_id)).success


def _mark_prepared(prepared: Any) -> str:
    name = "prepared-marker"
    (prepared / ".git" / name).write_text("x\n")
    return name


def _push_file(clone: Any, name: str) -> None:
    (clone / name).write_text("pushed after the clone was prepared\n")
    git(clone, "add", name)
    git(clone, "commit", "-q", "-m", name)
    git(clone, "push", "-q", "origin", "HEAD:main")


def _shared_inodes(one: Any, other: Any) -> bool:
    first = {p.stat().st_ino for p in one.rglob("*") if p.is_file()}
    return bool(first & {p.stat().st_ino for p in other.rglob("*") if p.is_file()})


async def test_a_worker_that_just_became_warm_is_taken_at_once(
    manager: ManagerRunner, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create does not wait for a start to notice that its worker is warm (here it looks
    only every 3 s): it claims the warm worker itself, and the pool tops up again."""
    monkeypatch.setattr(pool_module, "_POLL_S", 3.0)
    await manager.start(pool={**POOL, "size": 1})
    (warm,) = await full_pool(client, size=1)
    created = await client.create()
    assert created.success, created.error
    assert created.worker_id == warm.worker_id
    (refill,) = await full_pool(client, size=1)
    assert refill.worker_id != warm.worker_id
    assert (await client.delete(created.worker_id)).success


async def test_deleting_a_worker_freshens_the_next_prepared_clone(
    manager: ManagerRunner, client: Client, tmp_path: Any
) -> None:
    """When a task's worker is deleted (its work integrated), the prepared clone of its
    repository gets what was pushed, off the next create's path."""
    await manager.start()
    clone, remote = make_repo_with_remote(tmp_path)
    created = await client.create(context={"repo_url": str(remote), "branch": "task/1"})
    assert created.success, created.error
    prepared = RepositoryMirrors(manager.data_dir / "mirrors").prepared_path(str(remote))

    async def ready() -> bool:
        return await asyncio.to_thread(prepared.is_dir)

    await eventually(ready, timeout_s=30, what="the next clone prepared")
    await asyncio.to_thread(_push_file, clone, "integrated.txt")
    assert (await client.delete(created.worker_id)).success
    head = git(clone, "rev-parse", "HEAD")

    async def freshened() -> bool:
        return git(prepared, "rev-parse", "HEAD") == head

    await eventually(freshened, timeout_s=30, what="the prepared clone freshened")
    assert await asyncio.to_thread(exists, prepared / "integrated.txt")
