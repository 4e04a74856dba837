"""A running task failed by `enforce_task_deadlines`, seen from its langgraph flow: the real
actor, API, Redis and git of the langgraph tests, with their fake worker-manager."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from services.scheduler.api import HttpSchedulerApi
from services.scheduler.deps import SchedulerDeps
from services.scheduler.jobs import enforce_task_deadlines
from services.scheduler.loop import Tick
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.probe import MemoryProbe
from services.scheduler.settings import SchedulerSettings
from services.scheduler.workers import RedisWorkerDirectory
from shared.contracts import CreateWorkerCommand, DeleteWorkerCommand, TaskStatus
from shared.messaging import Bus
from shared.registry import Actor
from shared.settings import TaskDeadlines
from tests.langgraph.conftest import graph_system  # noqa: F401 - the fixture
from tests.support.langgraph import GraphSystem, langgraph

PAST_DEADLINE_S = TaskDeadlines().engineering_s + 1


async def fail_past_deadline(world: GraphSystem, *, register_workers: bool) -> None:
    """One run of the job on a clock past the task's deadline; with `register_workers`, the
    fake worker-manager's live workers are written to the registry the scheduler reads."""
    settings = SchedulerSettings()
    if register_workers:
        for worker_id, context in world.workers.live.items():
            await world.redis.hset(
                f"workers:{{{worker_id}}}",
                mapping={"status": "busy", "task_id": context["task_id"]},
            )
            await world.redis.sadd("workers:index", worker_id)
    client = world.client(world.service_key)
    deps = SchedulerDeps(
        redis=world.redis,
        publisher=Bus(world.redis, actor=Actor.SCHEDULER),
        api=HttpSchedulerApi(client),
        workers=RedisWorkerDirectory(world.redis),
        probe=MemoryProbe(),
        settings=settings,
        metrics=SchedulerMetrics.create(CollectorRegistry()),
        clock=lambda: time.time() + PAST_DEADLINE_S,
    )
    try:
        await enforce_task_deadlines(
            deps, Tick(job="enforce_task_deadlines", number=1, interval_s=30)
        )
    finally:
        await client.aclose()


@pytest.mark.parametrize("agent_answers", ["after its worker is deleted", "with a commit"])
async def test_the_flow_ends_and_the_deadline_reason_stands(
    graph_system: GraphSystem,  # noqa: F811 - the fixture imported above
    agent_answers: str,
) -> None:
    """The scheduler fails the task while its agent works: whether the agent then fails (its
    worker deleted by the scheduler) or succeeds, the flow ends and the reason is kept."""
    project = await graph_system.project("Late", scaffolded=True)
    graph_system.workers.hold = asyncio.Event()
    deleted = agent_answers == "after its worker is deleted"
    async with langgraph(graph_system):
        task_id = await graph_system.task(project.id, "spec")
        await asyncio.wait_for(graph_system.workers.sent.wait(), 10)
        await fail_past_deadline(graph_system, register_workers=deleted)
        failed = await graph_system.admin.get_task(task_id)
        if deleted:
            async with asyncio.timeout(10):
                while graph_system.workers.count(DeleteWorkerCommand) < 1:  # noqa: ASYNC110 - consumed by the fake
                    await asyncio.sleep(0.05)
        graph_system.workers.hold.set()
        await graph_system.wait_idle()
    final = await graph_system.admin.get_task(task_id)
    assert final.status == TaskStatus.FAILED
    assert final.result == failed.result
    assert final.result is not None
    assert final.result["error"].startswith("deadline exceeded: still running at its deadline")
    assert graph_system.workers.count(CreateWorkerCommand) == 1
    assert graph_system.workers.live == {}
