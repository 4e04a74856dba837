"""The engineering flow's fast path against the real API: the requests one task costs (the
cancel re-read skipped while a status read is fresh, the project given back with the task's
final PATCH), the merged `start`+`prepare` node resuming a flow checkpointed at the old
`prepare`, and a cancel still honoured with the longest freshness window."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig

from services.langgraph.api import ApiAdapter
from services.langgraph.graphs.state import initial_state
from services.langgraph.main import open_actor
from services.langgraph.store import FlowStore
from shared.api_client.schemas import ProjectUpdate, TaskUpdate
from shared.contracts import (
    AgentRunRecord,
    CreateWorkerCommand,
    ProgressEvent,
    ProjectStatus,
    TaskCreate,
    TaskStatus,
    TaskType,
)
from shared.git.naming import repo_full_name
from shared.messaging import Bus
from shared.registry import Actor
from tests.support.langgraph import GraphSystem, langgraph

SPEC_RUN = AgentRunRecord(
    agent="fake-agent",
    status="success",
    prompt_chars=100,
    input_tokens=1_000,
    output_tokens=100,
    cost_usd=0.25,
    duration_ms=50,
    exit_code=0,
)
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class CountingApp:
    """The API app, counting the requests made with one credential (langgraph's) as
    (method, path with the ids of the task and project replaced); not the sweeper's poll
    of cancelled tasks (`GET /api/tasks`, on a timer, not per task)."""

    def __init__(self, app: Any, key: str) -> None:
        self.app = app
        self.header = f"Bearer {key}".encode()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.names: dict[str, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        polled = scope.get("path") == "/api/tasks"  # the sweeper's poll of cancels: per second
        if scope["type"] == "http" and (b"authorization", self.header) in scope["headers"]:
            path = str(scope["path"])
            for value, name in self.names.items():
                path = path.replace(value, name)
            if not polled:
                self.requests[(str(scope["method"]), path)] += 1
        await self.app(scope, receive, send)

    def by_method(self) -> dict[str, int]:
        """How many requests of each method."""
        totals: Counter[str] = Counter()
        for (method, _), count in self.requests.items():
            totals[method] += count
        return dict(totals)


def _counting(graph_system: GraphSystem) -> CountingApp:
    counting = CountingApp(graph_system.app, graph_system.service_key)
    graph_system.app = counting  # langgraph's client goes through it (not the admin's)
    return counting


@pytest.mark.parametrize("fresh_s", [3600.0, 0.0])
async def test_the_requests_of_one_task(graph_system: GraphSystem, fresh_s: float) -> None:
    """One task (a scaffolded project, no checks declared): `start` moves it to running
    and reads the project at once; the project goes `developing` (with the budget hold),
    `testing` for its checks, and back to `scaffolded` with the task's final PATCH; the
    run is recorded once. Within the freshness window no acting step but `integrate` asks
    whether the task was cancelled; with none every acting step asks."""
    project = await graph_system.project("Requests", scaffolded=True)
    graph_system.workers.run = SPEC_RUN
    counting = _counting(graph_system)
    async with langgraph(graph_system, status_fresh_s=fresh_s):
        task_id = await graph_system.task(project.id, "spec")
        counting.names = {task_id: "T", project.id: "P"}
        task = await graph_system.wait_final(task_id)
        await graph_system.wait_idle()
    assert task.status == TaskStatus.COMPLETED, task.result
    assert (await graph_system.admin.get_project(project.id)).status == ProjectStatus.SCAFFOLDED
    # the cancel checks: integrate always; create_worker, send_spec, checks without a window
    cancel_reads = 1 if fresh_s else 4
    assert counting.requests == Counter(
        {
            ("PATCH", "/api/tasks/T"): 2,  # running; completed with the project back
            ("GET", "/api/projects/P"): 1,  # start (prepare)
            ("PATCH", "/api/projects/P"): 2,  # developing, testing
            ("POST", "/api/tasks/T/budget-hold"): 1,
            ("POST", "/api/tasks/T/runs"): 1,  # the spec's run, with the checks' request
            ("GET", "/api/tasks/T"): cancel_reads,
        }
    )
    assert counting.by_method() == {"PATCH": 4, "GET": 1 + cancel_reads, "POST": 2}
    runs = await graph_system.admin.list_runs(task_id)
    assert [(r.step, r.run_key, r.cost_usd) for r in runs] == [
        ("send_spec", f"{task_id}~send_spec", 0.25)
    ]
    assert task.result is not None
    assert (task.result["agent_runs"], task.result["agent_cost_usd"]) == (1, 0.25)


async def test_a_failed_create_worker_gives_the_project_back(graph_system: GraphSystem) -> None:
    """create_worker makes its calls at once (the project is `developing` from there): its
    repository gone, the step fails and the task's end still gives the project back (to
    `active`, what it was)."""
    project = await graph_system.project("Gone", scaffolded=True)
    for status in (ProjectStatus.DEVELOPING, ProjectStatus.ACTIVE):
        await graph_system.admin.update_project(project.id, ProjectUpdate(status=status))
    shutil.rmtree(graph_system.git.path_of(repo_full_name("projects", project.id, project.name)))
    async with langgraph(graph_system):
        task = await graph_system.wait_final(await graph_system.task(project.id, "spec"))
        await graph_system.wait_idle()
    assert task.status == TaskStatus.FAILED
    assert task.result is not None
    assert "does not exist" in str(task.result["error"])
    assert graph_system.workers.count(CreateWorkerCommand) == 0
    assert (await graph_system.admin.get_project(project.id)).status == ProjectStatus.ACTIVE


async def test_a_flow_checkpointed_at_the_old_prepare_resumes(graph_system: GraphSystem) -> None:
    """A flow checkpointed by the `start` of before (which went on to a `prepare` node) is
    resumed at `prepare` by the merged graph and completes with one worker."""
    project = await graph_system.project("Old checkpoint", scaffolded=True)
    created = await graph_system.admin.create_task(
        TaskCreate(project_id=project.id, type=TaskType.ENGINEERING, spec="spec")
    )
    task_id = created.id
    async with (
        graph_system.client(graph_system.service_key) as client,
        open_actor(graph_system.settings, graph_system.redis, api=ApiAdapter(client)) as actor,
    ):
        # what the `start` of before did and checkpointed, its next node `prepare`
        await graph_system.admin.update_task(task_id, TaskUpdate(status=TaskStatus.RUNNING))
        state = initial_state(
            task_id=task_id,
            project_id=project.id,
            user_id=graph_system.user_id,
            request_id=task_id,
            correlation_id=created.correlation_id,
            callback_stream=None,
            flow="engineering",
        )
        graph = actor.runner.graphs["engineering"]
        await graph.aupdate_state(_config(task_id), {**state, "spec": "spec"}, as_node="start")
        assert (await graph.aget_state(_config(task_id))).next == ("prepare",)
        await FlowStore(graph_system.redis).add_flow(task_id, "engineering")
    async with langgraph(graph_system):  # the queue message finds the flow and continues it
        task = await graph_system.wait_final(task_id)
        await graph_system.wait_idle()
    assert task.status == TaskStatus.COMPLETED, task.result
    assert graph_system.workers.count(CreateWorkerCommand) == 1
    assert (await graph_system.admin.get_project(project.id)).status == ProjectStatus.SCAFFOLDED
    bus = Bus(graph_system.redis, actor=Actor.TELEGRAM_BOT)
    steps = [e.current_step async for e in bus.follow_progress(task_id) if e.type == "progress"]
    assert steps == ["prepare", "create_worker", "send_spec", "verify", "checks", "integrate"]


async def test_a_cancel_during_checks_is_honoured_by_integrate(graph_system: GraphSystem) -> None:
    """With the longest freshness window, a task cancelled while its checks run does not
    land: `integrate` asks every time (or the sweeper stops the wait first); main is
    unchanged, the worker deleted, the project given back."""
    project = await graph_system.project("Cancel", scaffolded=True)
    assert project.repository_url is not None
    graph_system.workers.directive_hold = asyncio.Event()
    async with langgraph(graph_system, status_fresh_s=3600.0):
        task_id = await graph_system.task(project.id, "spec")
        await asyncio.wait_for(graph_system.workers.directive_started.wait(), 20)
        full_name = graph_system.workers.live[next(iter(graph_system.workers.live))][
            "repo_full_name"
        ]
        main = await graph_system.git.head_of(full_name, "main")
        await graph_system.admin.cancel_task(task_id)
        graph_system.workers.directive_hold.set()  # the checks pass right after the cancel
        task = await graph_system.wait_final(task_id)
        await graph_system.wait_idle()
    assert task.status == TaskStatus.CANCELLED
    assert await graph_system.git.head_of(full_name, "main") == main
    assert graph_system.workers.live == {}
    assert (await graph_system.admin.get_project(project.id)).status == ProjectStatus.SCAFFOLDED
    bus = Bus(graph_system.redis, actor=Actor.TELEGRAM_BOT)
    events: list[ProgressEvent] = [e async for e in bus.follow_progress(task_id)]
    assert (events[-1].type, events[-1].error) == ("failed", "task cancelled")


def _config(task_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": task_id}}


async def test_an_answer_reads_the_checkpoint_once(
    graph_system: GraphSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delivering an answer reads the flow's checkpoint once (to find what it waits for);
    the state it hands back (the orphan-worker check reads `worker_id` in it) is the run's
    last values, the same as the checkpoint read afterwards."""
    project = await graph_system.project("Reads", scaffolded=True)
    async with langgraph(graph_system) as actor:
        runner = actor.runner
        reads: list[str] = []
        delivered: list[tuple[str, dict[str, Any] | None, int]] = []
        graph = runner.graphs["engineering"]
        read_state, deliver = graph.aget_state, runner.deliver

        async def counting_read(config: RunnableConfig, **kwargs: Any) -> Any:
            reads.append(str(config["configurable"]["thread_id"]))
            return await read_state(config, **kwargs)

        async def recording(request_id: str, answer: dict[str, Any]) -> Any:
            before = len(reads)
            state = await deliver(request_id, answer)
            copy = None if state is None else dict(state)
            delivered.append((request_id, copy, len(reads) - before))
            return state

        monkeypatch.setattr(graph, "aget_state", counting_read)
        monkeypatch.setattr(runner, "deliver", recording)
        task_id = await graph_system.task(project.id, "spec")
        task = await graph_system.wait_final(task_id)
        await graph_system.wait_idle()
        monkeypatch.undo()
        final = await runner.state_of(task_id)
    assert task.status == TaskStatus.COMPLETED, task.result
    steps = [request_id.rsplit("~", 1)[-1] for request_id, _, _ in delivered]
    assert steps[0] == "create_worker", steps
    assert steps[-1] == "delete_worker", steps
    # asserted here, not in the handler (a failing handler is only retried); at least one
    # read each, two when the sweeper kicked the flow meanwhile (its reads count too)
    assert all(read >= 1 for _, _, read in delivered)
    assert sum(read for _, _, read in delivered) < 2 * len(delivered)
    created = delivered[0][1]
    assert created is not None
    assert created["worker_id"]  # what the orphan check reads
    last = delivered[-1][1]
    assert last is not None
    assert last == dict(final)
