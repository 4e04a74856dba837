"""Job `enforce_task_deadlines`: re-drive queued tasks whose queue message seems lost, fail
tasks past their deadline.

Each tick, for every `running` and `queued` task (listed with its deadline, `TaskSchedule`):

- past its `deadline_at` (stamped by the API at creation, per task type): failed through the
  API with a reason naming the deadline. Workers the worker-manager's registry lists for the
  task get a `DeleteWorkerCommand`: its agent stops and its flow ends now (a wait answered
  "worker stopped") instead of at its step's own deadline, and the API keeps the scheduler's
  reason (a failed task's result is final);
- `queued` for `redrive_after_s` since its creation or its last re-drive: its queue message
  is published again (`POST /api/tasks/{id}/redrive`: the same task id and correlation id,
  through the API's outbox; the orchestrator starts at most one flow per task id). Only when
  the queue's consumer group exists and was handed every entry of the stream: a consumer that
  is down or behind will still read the message, and must not use up the task's re-drives.
  A task still queued `redrive_after_s` after its `max_redrives`-th re-drive is failed, the
  reason naming the re-drives and the deadline;
- an engineering task waiting for its turn (task order: no queue message yet, its deadline
  counts from its release) is left alone;
- a task that moved on between listing and acting (409) is left alone. Completed, failed and
  cancelled tasks are never listed, so never touched.
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis.asyncio as aioredis
import structlog
from pydantic import BaseModel
from redis.exceptions import ResponseError

from services.scheduler.deps import SchedulerDeps, queue_for
from services.scheduler.errors import ApiConflictError
from services.scheduler.jobs.streams import text
from services.scheduler.loop import Tick
from shared import registry
from shared.api_client.schemas import TaskSchedule
from shared.contracts import (
    DeleteWorkerCommand,
    DeployMessage,
    EngineeringMessage,
    TaskStatus,
    TaskType,
    new_id,
)

__all__ = ["consumer_caught_up", "enforce_task_deadlines", "unix_s"]

log = structlog.get_logger("services.scheduler.jobs.deadlines")

_MESSAGE_OF: dict[TaskType, type[BaseModel]] = {
    TaskType.ENGINEERING: EngineeringMessage,
    TaskType.DEPLOY: DeployMessage,
}
"""Task types whose flow starts from a queue message (the others cannot be re-driven)."""


def unix_s(moment: datetime) -> float:
    """A timestamp in Unix seconds (naive ones are UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _iso(moment: datetime) -> str:
    return datetime.fromtimestamp(unix_s(moment), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def consumer_caught_up(redis: aioredis.Redis, stream: str) -> bool:
    """True when the queue's consumer group exists and was handed every entry of the stream,
    so a task still queued is not waiting behind others: its message was lost or refused."""
    group = registry.resolve(stream).consumer_group
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:  # no such stream: nobody reads it (yet)
        return False
    for info in groups:
        if text(info["name"]) == group:
            last = text(info["last-delivered-id"])
            return not await redis.xrange(stream, min=f"({last}", max="+", count=1)
    return False


async def enforce_task_deadlines(deps: SchedulerDeps, tick: Tick) -> None:
    """Fail running and queued tasks past their deadline; re-drive (or, after too many
    re-drives, fail) tasks queued for too long."""
    now_s = deps.clock()
    for task in await deps.api.list_tasks(TaskStatus.RUNNING):
        if now_s >= unix_s(task.deadline_at):
            await _fail(deps, task, _deadline_reason(task), cause="deadline", tick=tick)
    caught_up: dict[str, bool] = {}
    for task in await deps.api.list_tasks(TaskStatus.QUEUED):
        if task.type == TaskType.ENGINEERING and task.released_at is None:
            continue  # it waits for its turn (task order): no message to lose, no deadline yet
        if now_s >= unix_s(task.deadline_at):
            await _fail(deps, task, _deadline_reason(task), cause="deadline", tick=tick)
        else:
            await _redrive_if_lost(deps, task, now_s=now_s, caught_up=caught_up, tick=tick)


async def _redrive_if_lost(
    deps: SchedulerDeps,
    task: TaskSchedule,
    *,
    now_s: float,
    caught_up: dict[str, bool],
    tick: Tick,
) -> None:
    waited_s = now_s - unix_s(task.redriven_at or task.released_at or task.created_at)
    message_type = _MESSAGE_OF.get(task.type)
    if waited_s < deps.settings.redrive_after_s or message_type is None:
        return
    queue = queue_for(message_type)
    if queue not in caught_up:
        caught_up[queue] = await consumer_caught_up(deps.redis, queue)
        if not caught_up[queue]:
            log.info("redrives_deferred", queue=queue, reason="consumer down or behind")
    if not caught_up[queue]:
        return
    if task.redrive_count >= deps.settings.max_redrives:
        reason = (
            f"not picked up: still queued {int(waited_s)} s after the last of "
            f"{task.redrive_count} re-drives of its queue message; failed by the scheduler "
            f"before its deadline {_iso(task.deadline_at)}"
        )
        await _fail(deps, task, reason, cause="redrives", tick=tick)
        return
    try:
        redriven = await deps.api.redrive_task(task.id)
    except ApiConflictError:
        log.info("stuck_task_moved_on", task_id=task.id, tick=tick.number)
        return
    deps.metrics.task_redrives.labels(task.type.value).inc()
    log.warning(
        "task_redriven",
        task_id=task.id,
        queue=queue,
        correlation_id=task.correlation_id,
        queued_s=int(waited_s),
        redrives=redriven.redrive_count,
        tick=tick.number,
    )


def _deadline_reason(task: TaskSchedule) -> str:
    allowance_s = unix_s(task.deadline_at) - unix_s(task.created_at)
    return (
        f"deadline exceeded: still {task.status.value} at its deadline "
        f"{_iso(task.deadline_at)} ({int(allowance_s)} s after its creation); "
        "failed by the scheduler"
    )


async def _fail(
    deps: SchedulerDeps, task: TaskSchedule, reason: str, *, cause: str, tick: Tick
) -> None:
    try:
        await deps.api.fail_task(task.id, reason)
    except ApiConflictError:
        log.info("stuck_task_moved_on", task_id=task.id, tick=tick.number)
        return
    deps.metrics.tasks_failed.labels(task.status.value, cause).inc()
    log.warning(
        "task_failed",
        task_id=task.id,
        status=task.status.value,
        cause=cause,
        deadline_at=_iso(task.deadline_at),
        redrives=task.redrive_count,
        tick=tick.number,
    )
    await _stop_workers(deps, task, tick=tick)


async def _stop_workers(deps: SchedulerDeps, task: TaskSchedule, *, tick: Tick) -> None:
    """Delete the workers of a task the scheduler failed (its flow would wait for them)."""
    queue = queue_for(DeleteWorkerCommand)
    for worker_id in await deps.workers.task_workers(task.id):
        command = DeleteWorkerCommand(request_id=new_id(), worker_id=worker_id)
        await deps.publisher.publish(queue, command)
        log.info(
            "failed_task_worker_stopped",
            task_id=task.id,
            worker_id=worker_id,
            request_id=command.request_id,
            tick=tick.number,
        )
