"""Job `enforce_task_deadlines` against the real API (SQLite and PostgreSQL, in process), its
outbox relay and real Redis: re-drives of lost queue messages, deadlines, replicas."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from services.api.app import create_app
from services.api.outbox.relay import OutboxRelay
from services.scheduler.api import HttpSchedulerApi
from services.scheduler.deps import SchedulerDeps
from services.scheduler.jobs import build_jobs, enforce_task_deadlines
from services.scheduler.lock import JobLocks
from services.scheduler.loop import Scheduler, Tick
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.probe import MemoryProbe
from services.scheduler.settings import SchedulerSettings
from services.scheduler.workers import RedisWorkerDirectory
from shared import registry
from shared.api_client import ApiClient
from shared.api_client.schemas import TaskSchedule, TaskUpdate
from shared.contracts import (
    DeleteWorkerCommand,
    EngineeringMessage,
    ProjectCreate,
    TaskCreate,
    TaskStatus,
    TaskType,
)
from shared.messaging import Bus
from shared.registry import Actor
from shared.settings import TaskDeadlines
from tests.api.conftest import (  # noqa: F401 - fixtures: the API on SQLite and PostgreSQL
    api,
    database,
    database_url,
    postgres_url,
)
from tests.support.api import ApiHarness
from tests.support.scheduler import stream_entries

ENGINEERING = registry.get("engineering:queue").name
DEPLOY = registry.get("deploy:queue").name
GROUP = registry.get("engineering:queue").consumer_group
DEADLINES = TaskDeadlines(engineering_s=3600, deploy_s=1800)
JOB = "enforce_task_deadlines"


@dataclass
class Clock:
    """The scheduler's clock, moved by hand (the API stamps real times)."""

    offset_s: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s


@dataclass
class World:
    """The API (service credential), its relay, Redis, and the job's dependencies."""

    harness: ApiHarness
    client: ApiClient
    redis: aioredis.Redis
    relay: OutboxRelay
    deps: SchedulerDeps
    clock: Clock

    async def task(self, kind: TaskType = TaskType.ENGINEERING) -> TaskSchedule:
        """A new task of a new project, its message published on its queue."""
        user_id, _ = await self.harness.user(int(time.time_ns() % 1_000_000_000) + 1)
        project = await self.client.create_project(ProjectCreate(name="p"), owner_id=user_id)
        created = await self.client.create_task(TaskCreate(project_id=project.id, type=kind))
        await self.relay.publish_pending()
        return await self.client.get_task_schedule(created.id)

    async def tick(self, *, after_s: float) -> None:
        """One run of the job, `after_s` seconds from now on the scheduler's clock."""
        self.clock.offset_s = after_s
        await enforce_task_deadlines(self.deps, Tick(job=JOB, number=1, interval_s=30))
        await self.relay.publish_pending()

    async def schedule(self, task_id: str) -> TaskSchedule:
        """The task as the API has it now."""
        return await self.client.get_task_schedule(task_id)


def memory_metrics() -> SchedulerMetrics:
    """Metric families on a registry of their own."""
    return SchedulerMetrics.create(CollectorRegistry())


@pytest.fixture
async def world(
    api: ApiHarness,  # noqa: F811 - the fixture imported above
    redis_client: aioredis.Redis,
) -> AsyncIterator[World]:
    """The API with 1 h / 30 min deadlines, the scheduler's job on its service credential."""
    app = create_app(api.database, task_deadlines=DEADLINES)
    transport = httpx.ASGITransport(app=app)
    client = ApiClient("http://api.test", key=api.service_key, transport=transport)
    clock = Clock()
    settings = SchedulerSettings(redrive_after_s=120, max_redrives=2)
    deps = SchedulerDeps(
        redis=redis_client,
        publisher=Bus(redis_client, actor=Actor.SCHEDULER),
        api=HttpSchedulerApi(client),
        workers=RedisWorkerDirectory(redis_client),
        probe=MemoryProbe(),
        settings=settings,
        metrics=memory_metrics(),
        clock=clock,
    )
    relay = OutboxRelay(api.database, Bus(redis_client, actor=Actor.API))
    try:
        yield World(api, client, redis_client, relay, deps, clock)
    finally:
        await client.aclose()


async def queue_messages(redis: aioredis.Redis, stream: str) -> list[EngineeringMessage]:
    """The engineering messages on a queue, oldest first."""
    return [
        EngineeringMessage.model_validate_json(fields[b"payload"])
        for _, fields in await stream_entries(redis, stream)
    ]


async def consume_and_lose(redis: aioredis.Redis, stream: str) -> None:
    """The consumer group reads every entry, and the entries are gone (dead-lettered, or lost
    with a Redis that crashed): the group has caught up, the tasks stay queued."""
    exists = bool(await redis.exists(stream))
    groups = {g["name"].decode() for g in await redis.xinfo_groups(stream)} if exists else set()
    if GROUP not in groups:
        await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    read = cast(
        list[tuple[bytes, list[tuple[bytes, object]]]],
        await redis.xreadgroup(GROUP, "langgraph-1", {stream: ">"}),
    )
    for _, entries in read or []:
        for entry_id, _fields in entries:
            await redis.xack(stream, GROUP, entry_id)
            await redis.xdel(stream, entry_id)


def counter(metric: object, *labels: str) -> float:
    """A counter's value (prometheus_client's private value holder)."""
    return cast(float, metric.labels(*labels)._value.get())  # type: ignore[attr-defined]  # a labelled Counter


async def test_a_lost_message_is_published_again_once(world: World) -> None:
    """Queued past `redrive_after_s` with its message gone: the same message is on the queue
    again, once; while it waits unread there, no second re-drive."""
    task = await world.task()
    [original] = await queue_messages(world.redis, ENGINEERING)
    await consume_and_lose(world.redis, ENGINEERING)
    await world.tick(after_s=60)  # not yet past the threshold
    assert await queue_messages(world.redis, ENGINEERING) == []
    await world.tick(after_s=130)
    await world.tick(after_s=400)  # the re-driven message waits, unread: nothing more
    [again] = await queue_messages(world.redis, ENGINEERING)
    assert (again.task_id, again.project_id, again.user_id, again.correlation_id) == (
        original.task_id,
        original.project_id,
        original.user_id,
        task.correlation_id,
    )
    after = await world.schedule(task.id)
    assert (after.status, after.redrive_count) == (TaskStatus.QUEUED, 1)
    assert after.redriven_at is not None
    assert counter(world.deps.metrics.task_redrives, "engineering") == 1


async def test_no_redrive_while_the_consumer_is_down_or_behind(world: World) -> None:
    """No consumer group yet, or entries it has not read: the message is still coming."""
    task = await world.task(TaskType.DEPLOY)
    await world.tick(after_s=600)  # no group on deploy:queue: langgraph never started
    await world.redis.xgroup_create(DEPLOY, GROUP, id="0")
    await world.tick(after_s=600)  # the group has not read the task's message yet
    assert len(await stream_entries(world.redis, DEPLOY)) == 1
    schedule = await world.schedule(task.id)
    assert (schedule.status, schedule.redrive_count) == (TaskStatus.QUEUED, 0)


async def test_after_max_redrives_the_task_fails_naming_the_deadline(world: World) -> None:
    """Each re-drive lost again: after `max_redrives` the task is failed with the reason."""
    task = await world.task()
    for offset_s in (130, 260):
        await consume_and_lose(world.redis, ENGINEERING)
        await world.tick(after_s=offset_s)
    assert (await world.schedule(task.id)).redrive_count == 2
    await consume_and_lose(world.redis, ENGINEERING)
    await world.tick(after_s=390)
    failed = await world.client.get_task(task.id)
    assert failed.status == TaskStatus.FAILED
    assert failed.result is not None
    deadline = task.deadline_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert failed.result["error"].startswith("not picked up: still queued")
    assert (
        "after the last of 2 re-drives of its queue message; failed by the scheduler "
        in failed.result["error"]
    )
    assert failed.result["error"].endswith(f"before its deadline {deadline}")
    assert await queue_messages(world.redis, ENGINEERING) == []
    assert counter(world.deps.metrics.tasks_failed, "queued", "redrives") == 1


async def test_tasks_past_their_deadline_fail_with_it_and_lose_their_workers(
    world: World,
) -> None:
    """Queued and running tasks past deadline_at are failed with a reason naming it; the
    running task's live worker gets a delete command; others' workers are left."""
    queued = await world.task(TaskType.DEPLOY)
    running = await world.task()
    await world.client.update_task(running.id, TaskUpdate(status=TaskStatus.RUNNING))
    for worker_id, task_id, status in [
        ("w-mine", running.id, "busy"),
        ("w-gone", running.id, "stopped"),
        ("w-other", "another-task", "busy"),
    ]:
        await world.redis.hset(
            f"workers:{{{worker_id}}}", mapping={"status": status, "task_id": task_id}
        )
        await world.redis.sadd("workers:index", worker_id)
    await world.tick(after_s=1700)  # past neither deadline (re-drive waits for a consumer)
    assert (await world.client.get_task(queued.id)).status == TaskStatus.QUEUED
    await world.tick(after_s=1801)  # past the deploy task's 30 min
    assert (await world.client.get_task(queued.id)).status == TaskStatus.FAILED
    assert (await world.client.get_task(running.id)).status == TaskStatus.RUNNING
    await world.tick(after_s=3601)  # past the engineering task's hour
    for task, allowance_s, status in [(queued, 1800, "queued"), (running, 3600, "running")]:
        failed = await world.client.get_task(task.id)
        assert failed.status == TaskStatus.FAILED
        deadline = task.deadline_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert failed.result == {
            "error": f"deadline exceeded: still {status} at its deadline {deadline} "
            f"({allowance_s} s after its creation); failed by the scheduler"
        }
    commands = [
        DeleteWorkerCommand.model_validate_json(fields[b"payload"])
        for _, fields in await stream_entries(world.redis, "worker:commands")
    ]
    assert [c.worker_id for c in commands] == ["w-mine"]
    assert counter(world.deps.metrics.tasks_failed, "running", "deadline") == 1


async def test_finished_tasks_are_never_touched(world: World) -> None:
    """Completed, failed and cancelled tasks long past their deadline keep status and result."""
    done = await world.task()
    await world.client.update_task(done.id, TaskUpdate(status=TaskStatus.RUNNING))
    result = {"request_id": "r", "status": "success", "commit_sha": "abc"}
    await world.client.update_task(done.id, TaskUpdate(status=TaskStatus.COMPLETED, result=result))
    failed = await world.task(TaskType.DEPLOY)
    await world.client.update_task(
        failed.id, TaskUpdate(status=TaskStatus.FAILED, result={"error": "its own"})
    )
    cancelled = await world.task()
    await world.client.cancel_task(cancelled.id)
    await consume_and_lose(world.redis, ENGINEERING)
    await world.tick(after_s=86_400)
    assert (await world.client.get_task(done.id)).result == result
    assert (await world.client.get_task(failed.id)).result == {"error": "its own"}
    after = [await world.schedule(t.id) for t in (done, failed, cancelled)]
    assert [(t.status, t.redrive_count) for t in after] == [
        (TaskStatus.COMPLETED, 0),
        (TaskStatus.FAILED, 0),
        (TaskStatus.CANCELLED, 0),
    ]
    assert await queue_messages(world.redis, ENGINEERING) == []


async def test_two_replicas_redrive_once_per_tick(world: World, redis_url: str) -> None:
    """Two scheduler replicas at the same tick: one runs the job, one re-drive is made."""
    task = await world.task()
    await consume_and_lose(world.redis, ENGINEERING)
    world.clock.offset_s = 130
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        replicas = [
            Scheduler(
                [job for job in build_jobs(world.deps) if job.name == JOB],
                JobLocks(client, owner=f"replica-{index}", lease_ttl_s=5.0),
                metrics=memory_metrics(),
            )
            for index, client in enumerate(clients)
        ]
        job = replicas[0].jobs[0]
        tick = replicas[0].next_tick(job)
        outcomes = await asyncio.gather(*(r.run_tick(job, tick) for r in replicas))
    finally:
        for client in clients:
            await client.aclose()
    assert sorted(outcomes) == ["claimed_elsewhere", "ran"]
    await world.relay.publish_pending()
    assert (await world.schedule(task.id)).redrive_count == 1
    assert [m.task_id for m in await queue_messages(world.redis, ENGINEERING)] == [task.id]
