"""Each job on real Redis with the real bus, an in-memory API, worker registry and probe."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TypeVar, cast

import redis.asyncio as aioredis
from pydantic import BaseModel

from services.scheduler import keys
from services.scheduler.api import MemorySchedulerApi
from services.scheduler.deps import SchedulerDeps, queue_for
from services.scheduler.jobs import (
    check_server_health,
    enforce_task_deadlines,
    provision_servers,
    report_dead_letters,
    stop_idle_workers,
)
from services.scheduler.jobs.streams import text
from services.scheduler.loop import Tick
from services.scheduler.probe import MemoryProbe
from services.scheduler.workers import MemoryWorkerDirectory
from shared import registry
from shared.api_client.schemas import ServerStatus, TaskSchedule
from shared.contracts import DeleteWorkerCommand, ProvisionerMessage, TaskStatus, TaskType
from tests.support.scheduler import get_int, server, stream_entries

M = TypeVar("M", bound=BaseModel)
TICK = Tick(job="test", number=1, interval_s=1.0)


async def published(redis: aioredis.Redis, message_type: type[M]) -> list[M]:
    """The messages of this type on its queue, oldest first."""
    entries = await stream_entries(redis, queue_for(message_type))
    return [message_type.model_validate_json(fields[b"payload"]) for _, fields in entries]


def memory_api(deps: SchedulerDeps) -> MemorySchedulerApi:
    """The in-memory API of the fixture."""
    return cast(MemorySchedulerApi, deps.api)


def status_of(api: MemorySchedulerApi, handle: str) -> ServerStatus:
    """A server's status as the API records it now."""
    return api.servers[handle].status


# provisioning ---------------------------------------------------------------------------------


async def test_provisioning_is_triggered_for_pending_servers_only(
    deps: SchedulerDeps, redis_client: aioredis.Redis
) -> None:
    """One ProvisionerMessage per pending_setup server; ready/unreachable/error get none."""
    api = memory_api(deps)
    for handle, status in [
        ("new-1", ServerStatus.PENDING_SETUP),
        ("new-2", ServerStatus.PENDING_SETUP),
        ("up", ServerStatus.READY),
        ("down", ServerStatus.UNREACHABLE),
        ("broken", ServerStatus.ERROR),
        ("busy", ServerStatus.PROVISIONING),
    ]:
        api.servers[handle] = server(handle, status)
    await provision_servers(deps, TICK)
    messages = await published(redis_client, ProvisionerMessage)
    assert sorted(m.server_handle for m in messages) == ["new-1", "new-2"]
    assert not any(m.is_recovery or m.force_reinstall for m in messages)


async def test_a_pending_server_is_not_triggered_again_before_its_retry_time(
    deps: SchedulerDeps, redis_client: aioredis.Redis
) -> None:
    """Ticks in a row trigger a pending server once; after the marker expires, once more."""
    memory_api(deps).servers["new"] = server("new", ServerStatus.PENDING_SETUP)
    await provision_servers(deps, TICK)
    await provision_servers(deps, TICK)
    assert len(await published(redis_client, ProvisionerMessage)) == 1
    await redis_client.delete(keys.marker_key("provision", "new"))  # retry time elapsed
    await provision_servers(deps, TICK)
    assert len(await published(redis_client, ProvisionerMessage)) == 2


# idle workers ---------------------------------------------------------------------------------


async def test_only_idle_workers_get_a_delete_command(
    deps: SchedulerDeps, redis_client: aioredis.Redis
) -> None:
    """A worker idle past worker_idle_s is deleted (once); a recently active one is not."""
    workers = cast(MemoryWorkerDirectory, deps.workers)
    now_s = time.time()
    idle_s = deps.settings.worker_idle_s
    workers.last_activity_s.update(
        {"sleepy": now_s - idle_s - 60, "busy": now_s - 5, "borderline": now_s - idle_s + 60}
    )
    await stop_idle_workers(deps, TICK)
    await stop_idle_workers(deps, TICK)
    commands = await published(redis_client, DeleteWorkerCommand)
    assert [c.worker_id for c in commands] == ["sleepy"]
    assert commands[0].command == "delete"


# task deadlines (the real API: test_deadlines.py) -------------------------------------------


def task(
    task_id: str,
    status: TaskStatus,
    age_s: float,
    *,
    kind: TaskType = TaskType.DEPLOY,
    allowance_s: float = 3600,
) -> TaskSchedule:
    """A task created `age_s` seconds ago whose deadline is `allowance_s` after that; an
    engineering or deploy task was released (its queue message written) when created."""
    created = datetime.now(UTC) - timedelta(seconds=age_s)
    released = created if kind in (TaskType.ENGINEERING, TaskType.DEPLOY) else None
    return TaskSchedule(
        id=task_id,
        project_id="p1",
        type=kind,
        status=status,
        created_at=created,
        correlation_id=f"c-{task_id}",
        deadline_at=created + timedelta(seconds=allowance_s),
        released_at=released,
    )


async def test_a_task_that_finished_meanwhile_does_not_fail_the_job(deps: SchedulerDeps) -> None:
    """A conflict (the task moved on between listing and failing) is skipped, others failed."""

    class RacingApi(MemorySchedulerApi):
        async def list_tasks(self, status: TaskStatus) -> list[TaskSchedule]:
            listed = await super().list_tasks(status)
            if status == TaskStatus.RUNNING:  # finishes right after being listed
                self.tasks["racer"] = self.tasks["racer"].model_copy(
                    update={"status": TaskStatus.COMPLETED}
                )
            return listed

    api = RacingApi()
    api.tasks["racer"] = task("racer", TaskStatus.RUNNING, 4000)
    api.tasks["stuck"] = task("stuck", TaskStatus.RUNNING, 4000)
    racing = SchedulerDeps(**{**deps.__dict__, "api": api})
    await enforce_task_deadlines(racing, TICK)
    assert api.tasks["racer"].status == TaskStatus.COMPLETED
    assert api.tasks["stuck"].status == TaskStatus.FAILED
    assert api.failures["stuck"].startswith("deadline exceeded: still running at its deadline")


async def test_a_task_picked_up_before_its_redrive_is_left_alone(
    deps: SchedulerDeps, redis_client: aioredis.Redis
) -> None:
    """A queued task that starts running between listing and re-driving (409) is skipped."""

    class RacingApi(MemorySchedulerApi):
        async def list_tasks(self, status: TaskStatus) -> list[TaskSchedule]:
            listed = await super().list_tasks(status)
            if status == TaskStatus.QUEUED:
                self.tasks["slow"] = self.tasks["slow"].model_copy(
                    update={"status": TaskStatus.RUNNING}
                )
            return listed

    await redis_client.xgroup_create("deploy:queue", "langgraph", id="$", mkstream=True)
    api = RacingApi()
    api.tasks["slow"] = task("slow", TaskStatus.QUEUED, 600)
    await enforce_task_deadlines(SchedulerDeps(**{**deps.__dict__, "api": api}), TICK)
    assert api.redrives == []
    assert api.tasks["slow"].status == TaskStatus.RUNNING
    assert api.failures == {}


async def test_a_task_type_without_a_queue_message_only_has_its_deadline(
    deps: SchedulerDeps, redis_client: aioredis.Redis
) -> None:
    """A queued scaffolding task is never re-driven (it has no message); past its deadline it
    fails; engineering tasks on a caught-up queue are re-driven."""
    for stream in ("engineering:queue", "deploy:queue"):
        await redis_client.xgroup_create(stream, "langgraph", id="$", mkstream=True)
    api = memory_api(deps)
    for item in [
        task("scaffold", TaskStatus.QUEUED, 600, kind=TaskType.SCAFFOLDING),
        task("late-scaffold", TaskStatus.QUEUED, 4000, kind=TaskType.SCAFFOLDING),
        task("lost", TaskStatus.QUEUED, 600, kind=TaskType.ENGINEERING),
        task("fresh", TaskStatus.QUEUED, 10, kind=TaskType.ENGINEERING),
    ]:
        api.tasks[item.id] = item
    await enforce_task_deadlines(deps, TICK)
    assert api.redrives == ["lost"]
    assert set(api.failures) == {"late-scaffold"}
    assert api.tasks["scaffold"].status == TaskStatus.QUEUED


# server health --------------------------------------------------------------------------------


async def test_a_ready_server_is_marked_unreachable_after_repeated_failures(
    deps: SchedulerDeps,
) -> None:
    """One failed probe is tolerated; `unreachable_after_failures` in a row mark it."""
    api = memory_api(deps)
    api.servers["flaky"] = server("flaky", ServerStatus.READY)
    api.servers["fine"] = server("fine", ServerStatus.READY)
    cast(MemoryProbe, deps.probe).reachable_handles.add("fine")
    assert deps.settings.unreachable_after_failures == 2
    await check_server_health(deps, TICK)
    assert status_of(api, "flaky") == ServerStatus.READY
    await check_server_health(deps, TICK)
    assert status_of(api, "flaky") == ServerStatus.UNREACHABLE
    assert status_of(api, "fine") == ServerStatus.READY


async def test_a_successful_probe_resets_the_failure_count(
    deps: SchedulerDeps, redis_client: aioredis.Redis
) -> None:
    """fail, succeed, fail: never two failures in a row, so the server stays ready."""
    api = memory_api(deps)
    probe = cast(MemoryProbe, deps.probe)
    api.servers["s"] = server("s", ServerStatus.READY)
    for reachable in (False, True, False):
        probe.reachable_handles = {"s"} if reachable else set()
        await check_server_health(deps, TICK)
    assert status_of(api, "s") == ServerStatus.READY
    assert await get_int(redis_client, keys.health_failures_key("s")) == 1


async def test_an_unreachable_server_that_answers_is_reprovisioned_once(
    deps: SchedulerDeps, redis_client: aioredis.Redis
) -> None:
    """Recovery: one ProvisionerMessage(is_recovery=True); still-down servers get none."""
    api = memory_api(deps)
    api.servers["back"] = server("back", ServerStatus.UNREACHABLE)
    api.servers["gone"] = server("gone", ServerStatus.UNREACHABLE)
    cast(MemoryProbe, deps.probe).reachable_handles.add("back")
    await check_server_health(deps, TICK)
    await check_server_health(deps, TICK)
    messages = await published(redis_client, ProvisionerMessage)
    assert [(m.server_handle, m.is_recovery) for m in messages] == [("back", True)]


# dead letters ---------------------------------------------------------------------------------


async def add_dead_letter(redis: aioredis.Redis, stream: str, reason: str) -> str:
    """A dead letter as the messaging runtime writes it."""
    entry_id = await redis.xadd(
        registry.dead_letter_stream(stream),
        {
            "type": "ProvisionerMessage",
            "payload": "{}",
            "dlq_reason": reason,
            "dlq_error": "handler failed",
            "dlq_attempts": "5",
        },
    )
    return text(entry_id)


def dead_letter_count(deps: SchedulerDeps, queue: str, reason: str) -> float:
    """The dead-letter counter of a queue pattern and reason."""
    return deps.metrics.dead_letters.labels(queue, reason)._value.get()  # type: ignore[no-any-return]  # prometheus_client's private value holder


async def test_each_dead_letter_is_reported_once(
    deps: SchedulerDeps, redis_client: aioredis.Redis
) -> None:
    """Reports see each new dead letter once, across ticks, on fixed and pattern queues."""
    await add_dead_letter(redis_client, "provisioner:queue", "exhausted")
    await report_dead_letters(deps, TICK)
    await report_dead_letters(deps, TICK)
    assert dead_letter_count(deps, "provisioner:queue", "exhausted") == 1
    last = await add_dead_letter(redis_client, "provisioner:queue", "invalid")
    await add_dead_letter(redis_client, "worker:42:input", "malformed")
    await report_dead_letters(deps, TICK)
    await report_dead_letters(deps, TICK)
    assert dead_letter_count(deps, "provisioner:queue", "exhausted") == 1
    assert dead_letter_count(deps, "provisioner:queue", "invalid") == 1
    assert dead_letter_count(deps, "worker:{id}:input", "malformed") == 1
    cursor = await redis_client.hget(
        keys.DEAD_LETTER_CURSORS, registry.dead_letter_stream("provisioner:queue")
    )
    assert cursor == last.encode()


async def test_dead_letters_are_read_in_batches(
    deps: SchedulerDeps, redis_client: aioredis.Redis
) -> None:
    """More dead letters than one batch: all are reported, each once."""
    small = SchedulerDeps(
        **{**deps.__dict__, "settings": deps.settings.model_copy(update={"dead_letter_batch": 2})}
    )
    for _ in range(5):
        await add_dead_letter(redis_client, "deploy:queue", "rejected")
    await report_dead_letters(small, TICK)
    await report_dead_letters(small, TICK)
    assert dead_letter_count(deps, "deploy:queue", "rejected") == 5


async def test_streams_that_are_not_dead_letters_of_a_queue_are_ignored(
    deps: SchedulerDeps, redis_client: aioredis.Redis
) -> None:
    """A stream named like a dead-letter stream of no registered queue is not reported."""
    await redis_client.xadd("{not-a-queue}:dlq", {"dlq_reason": "exhausted"})
    await report_dead_letters(deps, TICK)
    assert await redis_client.hlen(keys.DEAD_LETTER_CURSORS) == 0
