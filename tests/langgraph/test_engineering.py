"""The engineering flow end to end: real LangGraph, SQLite checkpointer, Redis, API, git."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable
from types import SimpleNamespace
from typing import cast

import pytest

from services.langgraph.api import ApiAdapter
from services.langgraph.errors import StepFailedError
from services.langgraph.graphs.state import FlowState, request_id_for
from services.langgraph.graphs.worker_steps import agent_answer, record_run
from services.langgraph.ports import FlowDeps
from shared import registry
from shared.api_client.schemas import ProjectUpdate
from shared.contracts import (
    CreateWorkerCommand,
    DeleteWorkerCommand,
    EngineeringMessage,
    EngineeringResult,
    ProgressEvent,
    ProjectStatus,
    SendMessageCommand,
    SendMessageResponse,
    TaskCreate,
    TaskStatus,
    TaskType,
)
from shared.git import run_git
from shared.git.naming import repo_full_name
from shared.messaging import Bus, Envelope
from shared.registry import Actor
from tests.langgraph.fakes import FAILED_RUN
from tests.support.langgraph import GraphSystem, langgraph
from tests.support.waiting import eventually


async def test_task_from_post_to_completed_with_commit_on_remote(graph_system: GraphSystem) -> None:
    """POST /api/tasks → scaffold → worker → agent commit → checks (none declared: pass) →
    integrated: completed, the agent's commit is main's head; the result says how."""
    project = await graph_system.project("Shop Bot")
    async with langgraph(graph_system):
        task_id = await graph_system.task(project.id, "Add a /start command")
        task = await graph_system.wait_final(task_id)
        await graph_system.wait_idle()
    assert task.status == TaskStatus.COMPLETED, task.result
    assert task.result is not None
    result = EngineeringResult.model_validate(task.result)
    assert result.status == "success"
    assert result.branch == "main"
    refreshed = await graph_system.admin.get_project(project.id)
    assert refreshed.status == ProjectStatus.SCAFFOLDED
    full_name = f"projects/shop-bot-{project.id[:8]}"
    assert result.commit_sha is not None
    assert await graph_system.git.head_of(full_name, "main") == result.commit_sha
    assert await graph_system.git.head_of(full_name, f"task/{task_id}") == result.commit_sha
    assert result.files_changed == [f"tasks/{task_id}.md"]
    assert task.result["task_branch"] == f"task/{task_id}"
    assert task.result["merged_sha"] == result.commit_sha
    assert task.result["checks"]["rounds"] == 1
    [run] = task.result["checks"]["runs"]
    assert (run["passed"], run["note"], run["checks"]) == (True, "no checks declared", [])
    assert task.result["agent_answer"].startswith("Done. Commit ")
    assert task.result["pull_request_url"] is None
    assert len(graph_system.scaffolder.messages) == 1
    assert graph_system.workers.live == {}


async def test_progress_events_cover_every_step(graph_system: GraphSystem) -> None:
    """The progress stream starts, names each step with rising percentages, and completes."""
    project = await graph_system.project("Progress", scaffolded=True)
    async with langgraph(graph_system):
        task_id = await graph_system.task(project.id, "spec")
        await graph_system.wait_final(task_id)
    bus = Bus(graph_system.redis, actor=Actor.TELEGRAM_BOT)
    events: list[ProgressEvent] = [e async for e in bus.follow_progress(task_id)]
    assert events[0].type == "started"
    assert events[-1].type == "completed"
    assert events[-1].progress_pct == 100
    steps = [e.current_step for e in events if e.type == "progress"]
    # the worker is deleted after the task's end is recorded: cleanup, no step of the task
    assert steps == ["prepare", "create_worker", "send_spec", "verify", "checks", "integrate"]
    pcts = [e.progress_pct or 0 for e in events if e.type == "progress"]
    assert pcts == sorted(pcts)
    assert max(pcts) < 100


async def test_the_task_completes_before_its_worker_is_deleted(
    graph_system: GraphSystem,
) -> None:
    """Deleting the worker is cleanup: the task's final status and result are recorded
    while the delete is still unanswered; the flow ends once the worker is gone, the task
    unchanged."""
    project = await graph_system.project("Cleanup", scaffolded=True)
    graph_system.workers.hold_delete = asyncio.Event()
    async with langgraph(graph_system):
        task_id = await graph_system.task(project.id, "spec")
        task = await graph_system.wait_final(task_id)
        assert task.status == TaskStatus.COMPLETED, task.result
        assert list(graph_system.workers.live) == ["w1"]  # not deleted yet
        assert await graph_system.redis.hexists("langgraph:flows", task_id)  # the flow lives
        graph_system.workers.hold_delete.set()
        await graph_system.wait_idle()
    assert graph_system.workers.live == {}
    assert graph_system.workers.count(DeleteWorkerCommand) == 1
    after = await graph_system.admin.get_task(task_id)
    assert (after.status, after.result) == (task.status, task.result)


async def test_result_goes_to_the_callback_stream(graph_system: GraphSystem) -> None:
    """A message with a callback_stream gets its EngineeringResult there."""
    project = await graph_system.project("Callback", scaffolded=True)
    # a task row with no flow of its own; its engineering message is published by hand
    task = await graph_system.admin.create_task(
        TaskCreate(project_id=project.id, type=TaskType.SCAFFOLDING, spec="x")
    )
    callback = registry.get("results:{actor}").format(actor="PO-Worker")
    message = EngineeringMessage(
        task_id=task.id,
        project_id=project.id,
        user_id=graph_system.user_id,
        callback_stream=callback,
    )
    async with langgraph(graph_system):
        await Bus(graph_system.redis, actor=Actor.PO_WORKER).publish("engineering:queue", message)
        final = await graph_system.wait_final(task.id)
    assert final.status == TaskStatus.COMPLETED
    entries = await graph_system.redis.xrange(callback) or []
    envelopes = [Envelope.from_fields(_text_fields(fields or {})) for _, fields in entries]
    assert [e.type for e in envelopes] == ["EngineeringResult"]
    result = EngineeringResult.model_validate_json(envelopes[0].payload)
    assert result.status == "success"
    assert result.request_id == message.request_id


def _text_fields(fields: dict[bytes | str, bytes | str]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }


async def test_redelivered_message_starts_no_second_flow(graph_system: GraphSystem) -> None:
    """The same EngineeringMessage twice (a redelivery) creates one worker, one result."""
    project = await graph_system.project("Twice", scaffolded=True)
    graph_system.workers.hold = asyncio.Event()
    async with langgraph(graph_system):
        task_id = await graph_system.task(project.id, "spec")
        await asyncio.wait_for(graph_system.workers.sent.wait(), 10)
        task = await graph_system.admin.get_task(task_id)
        again = EngineeringMessage(
            task_id=task_id, project_id=project.id, user_id=graph_system.user_id
        )
        await Bus(graph_system.redis, actor=Actor.PO_WORKER).publish("engineering:queue", again)
        await asyncio.sleep(0.5)
        graph_system.workers.hold.set()
        final = await graph_system.wait_final(task_id)
        await graph_system.wait_idle()
        await Bus(graph_system.redis, actor=Actor.PO_WORKER).publish("engineering:queue", again)
        await asyncio.sleep(0.5)
    assert task.status == TaskStatus.RUNNING
    assert final.status == TaskStatus.COMPLETED
    assert graph_system.workers.count(CreateWorkerCommand) == 1
    assert (await graph_system.admin.get_task(task_id)).status == TaskStatus.COMPLETED


async def test_failing_agent_fails_only_its_own_task(graph_system: GraphSystem) -> None:
    """One agent that fails fails its task with the agent's error; the other completes."""
    project = await graph_system.project("Mixed", scaffolded=True)
    async with langgraph(graph_system):
        bad = await graph_system.task(project.id, "please FAIL")
        good = await graph_system.task(project.id, "work well")
        bad_task = await graph_system.wait_final(bad)
        good_task = await graph_system.wait_final(good)
        await graph_system.wait_idle()
    assert bad_task.status == TaskStatus.FAILED
    assert bad_task.result is not None
    assert bad_task.result["error"] == "send_spec: agent crashed"
    # what the failed run spent is still the task's: in its result and in its run record
    assert bad_task.result["agent_cost_usd"] == pytest.approx(FAILED_RUN.cost_usd)
    assert bad_task.result["agent_runs"] == 1
    runs = await graph_system.admin.list_runs(bad)
    assert [(r.step, r.status, r.run_key) for r in runs] == [
        ("send_spec", "error", f"{bad}~send_spec")
    ]
    assert runs[0].cost_usd == pytest.approx(FAILED_RUN.cost_usd)
    assert good_task.status == TaskStatus.COMPLETED
    assert graph_system.workers.live == {}
    # the agent failed on a live worker: no second worker for it
    assert [
        c.context["task_id"]
        for c in graph_system.workers.commands
        if isinstance(c, CreateWorkerCommand)
    ].count(bad) == 1


async def test_a_worker_that_dies_under_the_spec_is_replaced(graph_system: GraphSystem) -> None:
    """The first worker dies (its registry record turns failed): the spec goes to a second
    worker, which commits; the task completes and says what happened."""
    project = await graph_system.project("Phoenix", scaffolded=True)
    async with langgraph(graph_system):
        task_id = await graph_system.task(project.id, "build it DIE-ONCE")
        task = await graph_system.wait_final(task_id)
        await graph_system.wait_idle()
    assert task.status == TaskStatus.COMPLETED, task.result
    assert task.result is not None
    assert task.result["commit_sha"]
    creates = [c for c in graph_system.workers.commands if isinstance(c, CreateWorkerCommand)]
    assert [c.request_id for c in creates] == [
        f"{task_id}~create_worker",
        f"{task_id}~create_worker@2",
    ]
    sends = [c for c in graph_system.workers.commands if isinstance(c, SendMessageCommand)]
    assert [(c.request_id, c.worker_id) for c in sends] == [
        (f"{task_id}~send_spec", "w1"),
        (f"{task_id}~send_spec@2", "w2"),
        (f"{task_id}~checks#1", "w2"),
    ]
    assert graph_system.workers.live == {}  # the second worker was deleted at the end
    notes = await progress_messages(graph_system, task_id)
    assert any("died while handling the request" in n and "(2 of 3)" in n for n in notes)


async def test_a_task_whose_workers_keep_dying_fails_after_its_attempts(
    graph_system: GraphSystem,
) -> None:
    """Every worker dies: after `worker_attempts` (2 here) workers the task fails with the
    death of the last one."""
    project = await graph_system.project("Cursed", scaffolded=True)
    async with langgraph(graph_system, worker_attempts=2):
        task_id = await graph_system.task(project.id, "build it DIE")
        task = await graph_system.wait_final(task_id)
        await graph_system.wait_idle()
    assert task.status == TaskStatus.FAILED
    assert task.result is not None
    assert task.result["error"] == "send_spec: worker w2 died while handling the request: killed"
    assert graph_system.workers.count(CreateWorkerCommand) == 2


async def progress_messages(graph_system: GraphSystem, task_id: str) -> list[str]:
    """The messages of a task's progress events."""
    bus = Bus(graph_system.redis, actor=Actor.LANGGRAPH)
    return [
        event.message or ""
        async for event in bus.follow_progress(task_id, from_start=True)
        if event is not None
    ]


async def test_failed_scaffold_fails_the_task(graph_system: GraphSystem) -> None:
    """A scaffolder failure fails the task at the scaffold step; no worker is created."""
    project = await graph_system.project("Broken")
    graph_system.scaffolder.fail = True
    async with langgraph(graph_system):
        task = await graph_system.wait_final(await graph_system.task(project.id, "spec"))
    assert task.status == TaskStatus.FAILED
    assert task.result is not None
    assert task.result["error"] == "scaffold: no template"
    assert graph_system.workers.count(CreateWorkerCommand) == 0


async def test_cancel_stops_the_flow_and_deletes_the_worker(graph_system: GraphSystem) -> None:
    """Cancelling a task whose agent never answers deletes its worker and ends the flow."""
    project = await graph_system.project("Cancel", scaffolded=True)
    async with langgraph(graph_system):
        task_id = await graph_system.task(project.id, "HANG forever")
        await asyncio.wait_for(graph_system.workers.sent.wait(), 10)
        assert len(graph_system.workers.live) == 1
        await graph_system.admin.cancel_task(task_id)
        await graph_system.wait_idle()
    task = await graph_system.admin.get_task(task_id)
    assert task.status == TaskStatus.CANCELLED
    assert task.result is not None
    assert task.result["error"] == "task cancelled"
    assert graph_system.workers.live == {}


async def test_worker_created_after_cancel_is_deleted(graph_system: GraphSystem) -> None:
    """Cancelled while its worker was being created: the late worker is deleted at once."""
    project = await graph_system.project("Late", scaffolded=True)
    graph_system.workers.hold_create = asyncio.Event()
    async with langgraph(graph_system):
        task_id = await graph_system.task(project.id, "spec")

        async def waiting_for_worker() -> bool:
            return bool(await graph_system.redis.hexists("langgraph:waits", task_id))

        await eventually(waiting_for_worker)
        await graph_system.admin.cancel_task(task_id)
        await graph_system.wait_idle()
        graph_system.workers.hold_create.set()

        async def no_workers() -> bool:
            return (
                graph_system.workers.count(CreateWorkerCommand) == 1
                and not graph_system.workers.live
            )

        await eventually(no_workers)
    task = await graph_system.admin.get_task(task_id)
    assert task.status == TaskStatus.CANCELLED
    assert graph_system.workers.count(SendMessageCommand) == 0


async def test_step_deadline_fails_the_task(graph_system: GraphSystem) -> None:
    """An agent that never answers within the step deadline fails the task, worker deleted."""
    project = await graph_system.project("Slow", scaffolded=True)
    graph_system.settings.timeouts.agent_s = 0.5
    graph_system.settings.timeouts.create_worker_s = 0.5
    async with langgraph(graph_system):
        task = await graph_system.wait_final(await graph_system.task(project.id, "HANG"))
        await graph_system.wait_idle()
    assert task.status == TaskStatus.FAILED
    assert task.result is not None
    assert task.result["error"] == "send_spec: no answer within 1s"
    assert graph_system.workers.live == {}


@pytest.mark.slow
async def test_fifty_concurrent_flows_complete(graph_system: GraphSystem) -> None:
    """50 tasks at once on one project all complete, each landing its own commit on main
    in its turn (merging main first when it moved)."""
    project = await graph_system.project("Busy", scaffolded=True)
    async with langgraph(graph_system):
        ids = [await graph_system.task(project.id, f"task {n}") for n in range(50)]
        tasks = await graph_system.wait_all_final(ids, timeout_s=300)
        await graph_system.wait_idle()
    assert [t.status for t in tasks] == [TaskStatus.COMPLETED] * 50
    shas = {t.result["commit_sha"] for t in tasks if t.result}
    assert len(shas) == 50
    full_name = repo_full_name("projects", project.id, project.name)
    main = await graph_system.git.head_of(full_name, "main")
    _, root, _ = await run_git(
        "rev-list", "--max-parents=0", "main", cwd=graph_system.git.path_of(full_name)
    )
    landed = await graph_system.git.diff_files(full_name, root.strip(), main or "")
    assert landed == sorted(f"tasks/{task_id}.md" for task_id in ids)
    assert graph_system.workers.count(CreateWorkerCommand) == 50
    assert graph_system.workers.live == {}


async def test_tasks_of_a_project_run_in_order_each_on_the_previous_commit(
    graph_system: GraphSystem,
) -> None:
    """Three tasks created at once on a project with the default task order: they run one
    after the other, in creation order, and each commit's parent is the previous task's
    commit (each started from the previous one's integrated work, no merge needed)."""
    project = await graph_system.project("Ordered", scaffolded=True, parallel_tasks=1)
    async with langgraph(graph_system):
        ids = [await graph_system.task(project.id, f"step {n}") for n in range(3)]
        tasks = await graph_system.wait_all_final(ids, timeout_s=180)
        await graph_system.wait_idle()
    assert [t.status for t in tasks] == [TaskStatus.COMPLETED] * 3
    shas = [str((t.result or {})["commit_sha"]) for t in tasks]
    path = graph_system.git.path_of(repo_full_name("projects", project.id, project.name))
    for earlier, later in itertools.pairwise(shas):
        _, parent, _ = await run_git("rev-parse", f"{later}^", cwd=path)
        assert parent.strip() == earlier
    assert (
        await graph_system.git.head_of(repo_full_name("projects", project.id, project.name), "main")
        == shas[-1]
    )


async def test_a_turn_held_by_an_ended_task_is_broken(graph_system: GraphSystem) -> None:
    """The project's integration turn held by a task that no longer runs (its flow lost) is
    broken: the waiting task integrates, then gives the turn back."""
    project = await graph_system.project("Stale turn", scaffolded=True)
    stale = await graph_system.task(project.id, "HANG")
    await graph_system.admin.cancel_task(stale)
    await graph_system.redis.set(f"langgraph:integrate:{project.id}", stale)
    async with langgraph(graph_system):
        task = await graph_system.wait_final(await graph_system.task(project.id, "spec"))
        await graph_system.wait_idle()
    assert task.status == TaskStatus.COMPLETED, task.result
    assert await graph_system.redis.get(f"langgraph:integrate:{project.id}") is None


async def test_a_task_waits_for_the_turn_of_a_running_one(graph_system: GraphSystem) -> None:
    """While another running task holds the project's turn, a task waits (main untouched);
    once the turn is given back it integrates."""
    project = await graph_system.project("Queue", scaffolded=True)
    full_name = repo_full_name("projects", project.id, project.name)
    before = await graph_system.git.head_of(full_name, "main")
    async with langgraph(graph_system):
        holder = await graph_system.task(project.id, "HANG and hold the turn")
        await graph_system.redis.set(f"langgraph:integrate:{project.id}", holder)
        task_id = await graph_system.task(project.id, "spec")

        async def waiting() -> bool:
            raw = await graph_system.redis.hget("langgraph:waits", task_id)
            return raw is not None and b"integrate_turn" in raw

        await eventually(waiting, timeout_s=20)
        await asyncio.sleep(0.5)
        assert await graph_system.git.head_of(full_name, "main") == before
        assert (await graph_system.admin.get_task(task_id)).status == TaskStatus.RUNNING
        await graph_system.redis.delete(f"langgraph:integrate:{project.id}")
        task = await graph_system.wait_final(task_id)
        await graph_system.admin.cancel_task(holder)
        await graph_system.wait_idle()
    assert task.status == TaskStatus.COMPLETED, task.result
    assert task.result is not None
    assert await graph_system.git.head_of(full_name, "main") == task.result["commit_sha"]
    notes = [e for e in await progress_messages(graph_system, task_id) if "integrating" in e]
    assert len(notes) == 1  # waiting polls without new progress events


async def test_a_turn_given_back_goes_at_once_to_the_first_in_line(
    graph_system: GraphSystem,
) -> None:
    """Polls and sweeps a minute apart: the task waiting for the turn integrates within
    seconds of the holder giving it back (it is told, not polling), and leaves the line."""
    project = await graph_system.project("Line", scaffolded=True)
    async with langgraph(graph_system, turn_poll_s=60.0, sweep_interval_s=60.0) as actor:
        holder = await graph_system.task(project.id, "HANG and hold the turn")
        await actor.runner.store.take_turn(project.id, holder, ttl_ms=600_000)
        task_id = await graph_system.task(project.id, "spec")

        async def waiting() -> bool:
            raw = await graph_system.redis.hget("langgraph:waits", task_id)
            return raw is not None and b"integrate_turn" in raw

        await eventually(waiting, timeout_s=20)
        line = await graph_system.redis.zrange(f"langgraph:turn_queue:{project.id}", 0, -1)
        assert line == [task_id.encode()]
        assert await actor.runner.store.release_turn(project.id, holder)
        task = await graph_system.wait_final(task_id, timeout_s=10)  # not the 60 s poll
        await graph_system.admin.cancel_task(holder)
    assert task.status == TaskStatus.COMPLETED, task.result
    assert not await graph_system.redis.exists(f"langgraph:turn_queue:{project.id}")


async def test_cancel_during_the_checks_leaves_main_unchanged(graph_system: GraphSystem) -> None:
    """Cancelled while its checks run: the task ends cancelled, main is where it was, its
    worker is deleted and no integration turn is left behind."""
    project = await graph_system.project("Cancel checks", scaffolded=True)
    full_name = repo_full_name("projects", project.id, project.name)
    before = await graph_system.git.head_of(full_name, "main")
    graph_system.workers.directive_hold = asyncio.Event()
    async with langgraph(graph_system):
        task_id = await graph_system.task(project.id, "spec")
        await asyncio.wait_for(graph_system.workers.directive_started.wait(), 10)
        await graph_system.admin.cancel_task(task_id)
        await graph_system.wait_idle()
        graph_system.workers.directive_hold.set()
    task = await graph_system.admin.get_task(task_id)
    assert task.status == TaskStatus.CANCELLED
    assert await graph_system.git.head_of(full_name, "main") == before
    assert graph_system.workers.live == {}
    assert await graph_system.redis.get(f"langgraph:integrate:{project.id}") is None


async def test_an_active_project_is_testing_during_checks_then_active_again(
    graph_system: GraphSystem,
) -> None:
    """A deployed (active) project is `developing` while a task runs, `testing` during its
    checks, and `active` again once the task ended."""
    project = await graph_system.project("Live", scaffolded=True)
    for status in (ProjectStatus.DEPLOYING, ProjectStatus.ACTIVE):
        await graph_system.admin.update_project(project.id, ProjectUpdate(status=status))
    graph_system.workers.directive_hold = asyncio.Event()
    graph_system.workers.hold = asyncio.Event()
    async with langgraph(graph_system):
        task_id = await graph_system.task(project.id, "spec")
        await asyncio.wait_for(graph_system.workers.sent.wait(), 10)
        developing = (await graph_system.admin.get_project(project.id)).status
        graph_system.workers.hold.set()
        await asyncio.wait_for(graph_system.workers.directive_started.wait(), 10)
        testing = (await graph_system.admin.get_project(project.id)).status
        graph_system.workers.directive_hold.set()
        task = await graph_system.wait_final(task_id)
        await graph_system.wait_idle()
    assert task.status == TaskStatus.COMPLETED, task.result
    assert (developing, testing) == (ProjectStatus.DEVELOPING, ProjectStatus.TESTING)
    assert (await graph_system.admin.get_project(project.id)).status == ProjectStatus.ACTIVE


async def test_an_answer_handled_again_after_a_crash_records_its_run_once(
    graph_system: GraphSystem,
) -> None:
    """The answer handler runs twice on the same answer (langgraph died after recording the
    run, before its checkpoint): the API keeps one run; each pass adds the run to the
    flow's own state from the checkpointed state, so the sum is counted once too. A failed
    answer keeps its cost in the step's failure."""
    project = await graph_system.project("Replay")
    task_id = await graph_system.task(project.id, "replay me")
    client = graph_system.client(graph_system.service_key)
    deps = cast(FlowDeps, SimpleNamespace(api=ApiAdapter(client)))
    state = FlowState(task_id=task_id, agent_cost_usd=0.1, agent_runs=1)
    answer = SendMessageResponse(
        request_id=request_id_for(task_id, "fix#2"),
        success=False,
        error="budget exceeded: task 0.52/0.50",
        run=FAILED_RUN,
    )
    try:
        first = await record_run(state, deps, "fix", answer)
        again = await record_run(state, deps, "fix", answer)
        with pytest.raises(StepFailedError) as failed:
            await agent_answer("fix", answer.model_dump(mode="json"), state, deps)
        runs = await graph_system.admin.list_runs(task_id)
    finally:
        await client.aclose()
    assert first == again
    assert first["agent_runs"] == 2
    assert first["agent_cost_usd"] == pytest.approx(0.1 + FAILED_RUN.cost_usd)
    assert failed.value.kept == first
    assert [(r.step, r.run_key) for r in runs] == [("fix", f"{task_id}~fix#2")]


async def test_two_tasks_started_together_hold_the_monthly_cap(graph_system: GraphSystem) -> None:
    """A user under a $0.50 monthly cap starts two tasks at once: the first to hold its
    share holds all that remains and runs (its agent never answers here), the other fails
    at once with the budget error naming what is held; the worker that runs is told its
    hold as the month's cap and spend."""
    await graph_system.admin.set_budget(graph_system.user_id, 0.5)
    project = await graph_system.project("Capped", scaffolded=True)

    def creates() -> list[CreateWorkerCommand]:
        return [c for c in graph_system.workers.commands if isinstance(c, CreateWorkerCommand)]

    async def statuses() -> list[TaskStatus]:
        return [(await graph_system.admin.get_task(t)).status for t in tasks]

    async with langgraph(graph_system):
        tasks = [await graph_system.task(project.id, f"HANG {n}") for n in range(2)]
        await eventually(lambda: len(creates()) == 1, what="one worker created")
        await eventually(lambda: _has_failed(statuses()), what="one task refused", timeout_s=20)
        [create] = creates()
        running = create.context["task_id"]
        [refused] = [t for t in tasks if t != running]
        await graph_system.admin.cancel_task(running)
        await graph_system.wait_idle()
    failed = await graph_system.admin.get_task(refused)
    assert failed.status == TaskStatus.FAILED
    assert failed.result is not None
    assert failed.result["error"] == (
        f"create_worker: budget exceeded: user {graph_system.user_id} month 0.5000/0.5000 USD "
        "(0.5000 of it held by the user's running tasks); no new task runs an agent for this "
        "user before next month (an admin can raise the cap)"
    )
    assert (create.context["month_budget_usd"], create.context["month_spent_usd"]) == (
        "0.5",
        "0.0",
    )
    assert len(creates()) == 1


async def _has_failed(statuses: Awaitable[list[TaskStatus]]) -> bool:
    return TaskStatus.FAILED in await statuses
