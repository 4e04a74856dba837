"""The warm pool with the Docker runtime, against the real engine: warm containers started
ahead of their task, bound to one task each, removed after it, refilled after a crash,
adopted after a manager restart, stopped when idle.

The containers use the host's network and the built-in agent (or `sh` running each prompt,
to look at the task's environment from inside), as in test_docker_workers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from pathlib import Path
from typing import Any

import docker
import pytest

from services.worker_manager.docker_runtime import LABEL_WORKER
from services.worker_manager.keys import bind_key
from services.worker_manager.registry import WorkerRecord, WorkerRegistry
from tests.support.waiting import eventually
from tests.support.workers import Client
from tests.workers import test_docker_workers
from tests.workers.helpers import git, make_repo_with_remote
from tests.workers.test_agent_uid import check as check_uid_probe
from tests.workers.test_agent_uid import probe_prompt as uid_probe_prompt
from tests.workers.test_agent_uid import shell_agent as acl_shell_agent
from tests.workers.test_docker_workers import DockerManager, share_with_workers, shell_agent
from tests.workers.test_redis_acl import probe_prompt

docker_manager = test_docker_workers.docker_manager  # its fixtures, for this module too
engine_client = test_docker_workers.engine_client

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

POOL: dict[str, Any] = {"size": 1, "prewarm": ["claude-code/developer"], "idle_s": 600.0}


async def warm_records(client: Client) -> list[WorkerRecord]:
    """The records of warm (ready) workers."""
    return [r for r in await WorkerRegistry(client.redis).all() if r.status == "warm"]


async def full_pool(
    client: Client, size: int = 1, *, not_: Collection[str] = ()
) -> list[WorkerRecord]:
    """Wait until exactly `size` warm workers, none of `not_`, are ready; answer them."""

    async def check() -> list[WorkerRecord]:
        records = await warm_records(client)
        fresh = [r for r in records if r.worker_id not in not_]
        return records if len(records) == size and len(fresh) == size else []

    try:
        return await eventually(check, timeout_s=120, what=f"{size} warm containers")
    except TimeoutError:
        records = await WorkerRegistry(client.redis).all()
        statuses = [(r.worker_id, r.status, r.error) for r in records]
        raise AssertionError(f"never {size} warm containers: {statuses}") from None


def container_of(engine: docker.DockerClient, ref: str) -> Any:
    """The container, or None once it is removed."""
    try:
        return engine.containers.get(ref)
    except docker.errors.NotFound:
        return None


def pooled_remote(tmp_path: Path) -> Path:
    """A bare remote (writable by the workers' group) under `tmp_path/repos`."""
    root = tmp_path / "repos"
    root.mkdir(exist_ok=True)
    _, remote = make_repo_with_remote(root)
    share_with_workers(remote)
    return remote


async def test_create_binds_a_warm_container_and_never_reuses_it(
    docker_manager: DockerManager,
    client: Client,
    engine_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    """A create takes the warm container: the task's clone appears at its /workspace, the
    built-in agent commits and pushes from it, the task's secret never reaches the engine
    (the binding goes through Redis); the pool refills; delete removes the container, and
    later creates never get it back."""
    remote = pooled_remote(tmp_path)
    await docker_manager.start(
        pool=POOL, docker_overrides={"pool_remote_dirs": [str(tmp_path / "repos")]}
    )
    (warm,) = await full_pool(client)
    container = engine_client.containers.get(warm.runtime_ref)
    assert container.status == "running"
    assert container.labels[LABEL_WORKER] == warm.worker_id
    created = await client.create(
        env_vars={"PROJECT_TOKEN": "s3cret-value-1"},
        context={"repo_url": str(remote), "branch": "feature", "owner": "u1"},
    )
    assert created.success, created.error
    worker_id = created.worker_id
    assert worker_id == warm.worker_id
    record = await client.record(worker_id)
    assert (record.status, record.owner, record.runtime) == ("running", "u1", "docker")
    assert record.runtime_ref == warm.runtime_ref
    assert await client.redis.exists(bind_key(worker_id)) == 0
    container.reload()
    assert "s3cret-value-1" not in repr(container.attrs)  # not in its env, args or labels
    answer = await client.send(worker_id, "implement the spec")
    assert answer.success, answer.error
    sha = git(remote, "rev-parse", "feature")
    assert answer.response.endswith(f"commit: {sha}")
    (refill,) = await full_pool(client, not_={worker_id})
    assert refill.runtime_ref != warm.runtime_ref
    assert (await client.delete(worker_id)).success
    assert (await client.record(worker_id)).status == "stopped"
    assert container_of(engine_client, warm.runtime_ref) is None
    taken = set()
    for _ in range(2):  # more creates than the pool holds: none gets the first one back
        again = await client.create()
        assert again.success, again.error
        taken.add(again.worker_id)
    assert worker_id not in taken
    assert refill.worker_id in taken
    for other in taken:
        assert (await client.delete(other)).success


ENV_PROBE = """
echo "pwd=$(pwd) home=$HOME path=$PATH pythonpath=$PYTHONPATH"
echo "uid=$(id -u) gid=$(id -g) owner=$(stat -c %u:%g /workspace /workspace/README.md /session)"
grep -E '^(CapEff|NoNewPrivs):' /proc/self/status
echo "branch=$(git -C /workspace branch --show-current) token=$PROJECT_TOKEN"
env | grep -E '^(WORKER_|REDIS)' | cut -d= -f1 | sort | tr '\\n' ' '; echo
touch /workspace/probe && echo "workspace: writable"
"""


async def test_a_bound_warm_container_looks_like_a_fresh_one_from_inside(
    docker_manager: DockerManager,
    client: Client,
    engine_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    """The same task's environment, seen by its agent, in a warm container bound to it and
    in a container started for it (a local remote outside `pool_remote_dirs`, which a warm
    container cannot reach, gets one): same paths, PATH, HOME, uid, owner of its files,
    capabilities, branch and variables."""
    pooled = pooled_remote(tmp_path)
    (tmp_path / "other").mkdir()
    _, elsewhere = make_repo_with_remote(tmp_path / "other")
    share_with_workers(elsewhere)
    await docker_manager.start(
        pool=POOL,
        docker_overrides={"pool_remote_dirs": [str(tmp_path / "repos")]},
        **shell_agent(),
    )
    (warm,) = await full_pool(client)
    seen = {}
    for remote in (pooled, elsewhere):
        created = await client.create(
            env_vars={"PROJECT_TOKEN": "t0k"}, context={"repo_url": str(remote), "branch": "b1"}
        )
        assert created.success, created.error
        answer = await client.send(created.worker_id, ENV_PROBE)
        assert answer.success, answer.error
        seen[remote] = answer.response.strip().splitlines()
        assert (await client.delete(created.worker_id)).success
        if remote == pooled:
            assert created.worker_id == warm.worker_id
        else:
            assert not created.worker_id.startswith("warm-")
    assert seen[pooled] == seen[elsewhere]
    lines = seen[pooled]
    assert "pwd=/workspace home=/home/agent" in lines[0]
    assert "/opt/venv/bin" in lines[0]
    assert "branch=b1 token=t0k" in lines
    assert "workspace: writable" in lines
    assert not [line for line in lines if line.startswith("WORKER_") or "REDIS" in line]
    assert warm.worker_id not in {r.worker_id for r in await warm_records(client)}


async def test_a_killed_warm_container_is_replaced(
    docker_manager: DockerManager, client: Client, engine_client: docker.DockerClient
) -> None:
    """`docker kill` of a warm container: its record is failed, the container removed, and
    the pool starts another, which serves the next create."""
    await docker_manager.start(pool=POOL)
    (victim,) = await full_pool(client)
    await asyncio.to_thread(lambda: engine_client.containers.get(victim.runtime_ref).kill())
    (replacement,) = await full_pool(client, not_={victim.worker_id})
    failed = await client.record(victim.worker_id)
    assert failed.status == "failed"
    assert "died" in failed.error
    assert "exit code 137" in failed.error
    assert container_of(engine_client, victim.runtime_ref) is None
    created = await client.create()
    assert created.success, created.error
    assert created.worker_id == replacement.worker_id
    answer = await client.send(created.worker_id, "hello")
    assert answer.success, answer.error
    assert (await client.delete(created.worker_id)).success


async def test_a_restarted_manager_adopts_its_warm_containers(
    docker_manager: DockerManager, client: Client, engine_client: docker.DockerClient
) -> None:
    """Warm containers outlive a manager restart: the next run takes the one still running
    instead of starting another, and drops the one killed meanwhile."""
    await docker_manager.start(pool={**POOL, "size": 2})
    first, second = await full_pool(client, size=2)
    await docker_manager.stop()
    await asyncio.to_thread(lambda: engine_client.containers.get(second.runtime_ref).kill())
    await docker_manager.start(pool={**POOL, "size": 2})

    async def dropped() -> bool:  # the run adopts once started (its start does not wait)
        return (await client.record(second.worker_id)).status == "failed"

    await eventually(dropped, timeout_s=60, what="the killed warm container dropped")
    assert container_of(engine_client, second.runtime_ref) is None
    assert (await client.record(first.worker_id)).status == "warm"
    created = await client.create()
    assert created.success, created.error
    assert created.worker_id == first.worker_id  # the adopted one, the only one ready
    assert (await client.record(first.worker_id)).runtime_ref == first.runtime_ref
    answer = await client.send(created.worker_id, "after restart")
    assert answer.success, answer.error
    assert (await client.delete(created.worker_id)).success
    assert container_of(engine_client, first.runtime_ref) is None
    await full_pool(client, size=2, not_={first.worker_id, second.worker_id})


async def test_a_warm_container_of_a_replaced_image_is_not_adopted(
    docker_manager: DockerManager, client: Client, engine_client: docker.DockerClient
) -> None:
    """The next run of the manager names another image (rebuilt, or changed): the previous
    run's warm container is dropped and removed instead of adopted, and the pool starts one
    of the new image, which serves the next create."""
    await docker_manager.start(pool=POOL)
    (old,) = await full_pool(client)
    await docker_manager.stop()
    tag = f"pooltest-{old.worker_id}"
    image = await asyncio.to_thread(
        lambda: engine_client.containers.get(old.runtime_ref).commit(
            repository="codegen-orchestrator-worker", tag=tag, changes=["ENV POOL_TEST=1"]
        )
    )
    image_id = str(image.id)
    try:
        docker_manager.image = f"codegen-orchestrator-worker:{tag}"
        await docker_manager.start(pool=POOL)

        async def dropped() -> WorkerRecord | None:
            record = await client.record(old.worker_id)
            return record if record.status != "warm" else None

        failed = await eventually(dropped, timeout_s=60, what="the old warm container dropped")
        assert failed is not None
        assert (failed.status, failed.error) == ("failed", "not adopted on manager start")
        assert container_of(engine_client, old.runtime_ref) is None
        (new,) = await full_pool(client, not_={old.worker_id})
        assert engine_client.containers.get(new.runtime_ref).attrs["Image"] == image_id
        created = await client.create()
        assert created.success, created.error
        assert created.worker_id == new.worker_id
        assert (await client.delete(created.worker_id)).success
        await docker_manager.stop()
    finally:
        for container in engine_client.containers.list(
            all=True, filters={"ancestor": image_id}, sparse=True
        ):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                container.remove(force=True)
        engine_client.images.remove(image_id, force=True)


async def test_an_idle_docker_pool_shrinks(
    docker_manager: DockerManager, client: Client, engine_client: docker.DockerClient
) -> None:
    """A pool nobody used for `idle_s` stops its warm containers (`stopped`, removed)."""
    await docker_manager.start(pool={"size": 1, "prewarm": [], "idle_s": 1.0})
    created = await client.create()
    assert created.success, created.error

    async def pooled() -> WorkerRecord | None:  # it may be ready and shrunk between two looks
        others = [
            r
            for r in await WorkerRegistry(client.redis).all()
            if r.worker_id != created.worker_id and r.runtime_ref
        ]
        return others[0] if others else None

    warm = await eventually(pooled, timeout_s=120, what="the pool's container started")
    assert warm is not None
    assert (await client.delete(created.worker_id)).success

    async def shrunk() -> bool:
        gone = container_of(engine_client, warm.runtime_ref) is None
        return gone and (await client.record(warm.worker_id)).status == "stopped"

    await eventually(shrunk, timeout_s=120, what="the idle pool shrunk")
    assert (await client.record(warm.worker_id)).error == "warm pool idle"  # it was warm
    assert await warm_records(client) == []


async def test_the_warm_credential_a_bound_container_shows_is_dead(
    docker_manager: DockerManager, client: Client
) -> None:
    """With a Redis ACL user per worker and agent and wrapper as one uid (separate_agent
    off), the wrapper's /proc environ still shows the environment it was started with: the
    warm worker's Redis URL. Its password was replaced at bind, so an agent that steals it
    is refused by Redis; the wrapper itself works on with the task's credential (its rules
    are those of a fresh container's user, test_docker_workers.py)."""
    await docker_manager.start(
        pool=POOL, **shell_agent(), redis_acl=True, docker_overrides={"separate_agent": False}
    )
    (warm,) = await full_pool(client)
    created = await client.create(context={"task_id": "t-pooled-acl"})
    assert created.success, created.error
    assert created.worker_id == warm.worker_id
    answer = await client.send(created.worker_id, probe_prompt("python", created.worker_id))
    assert not answer.success
    assert "AuthenticationError: invalid username-password pair" in answer.error
    again = await client.send(created.worker_id, "echo still serving")
    assert again.success, again.error
    assert again.response.strip() == "still serving"
    assert (await client.delete(created.worker_id)).success


async def test_a_bound_warm_containers_agent_cannot_read_its_wrappers_credential(
    docker_manager: DockerManager, client: Client
) -> None:
    """separate_agent (the default) in a bound warm container: the agent, uid 10001 with no
    capability, is refused the wrapper's environ (which still shows the warm environment),
    mem and maps and any signal, and its own environment holds no credential."""
    await docker_manager.start(pool=POOL, **acl_shell_agent())
    (warm,) = await full_pool(client)
    created = await client.create()
    assert created.success, created.error
    assert created.worker_id == warm.worker_id
    answer = await client.send(created.worker_id, uid_probe_prompt("python", created.worker_id))
    assert answer.success, answer.error
    check_uid_probe(answer.response, 10001)
    assert (await client.delete(created.worker_id)).success
