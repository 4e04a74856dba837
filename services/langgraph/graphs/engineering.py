"""The engineering flow: scaffold if needed → developer worker → spec → checks (fix rounds)
→ integration into the base branch → cleanup.

```
start → prepare → [scaffold → scaffold_wait] → create_worker → create_worker_wait
      → send_spec → send_spec_wait → verify → checks ⟲ fix (at most `fix_rounds`)
      → integrate ⟲ (the base moved: merge it in the worker → [conflict: resolve] → checks)
      → delete_worker → delete_worker_wait → finish
```
The checks run in the worker (the reserved `@orchestrator checks` message); failing ones go
back to the same agent with their output. Integration happens in the task's integration
turn (one task of a project at a time, held from its first `integrate` until it lands or
ends; others wait at `integrate_turn`) and moves the base branch only to a checked commit
that contains it (a compare-and-swap
fast-forward; on GitHub a pull request merged at that commit), so a retry after a crash
never lands a change twice; a base that moved is merged into the task branch in the worker
(`@orchestrator merge BASE`), a conflict goes to the agent (`conflict_rounds`), and the
checks run again. Every failure leaves the base branch as it was. See
docs/engineering-flow.md.

When the developer worker dies under the spec (the worker registry marks it `failed`: its
process is gone or its heartbeat lost, e.g. after a crash of the whole system), the flow goes
back to `create_worker` with a new worker, up to `worker_attempts` workers per task; an agent
that fails on a live worker fails the task at once.
A flow that stops (failed, cancelled) goes to `delete_worker` when it has a worker, then to
`finish`, which records the task's final status and publishes the `EngineeringResult`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable
from typing import Any

import structlog
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from services.langgraph.errors import ApiCallError, StepFailedError
from services.langgraph.graphs.checks import CHECKS, FIX
from services.langgraph.graphs.common import announce_start, finish, mark_running
from services.langgraph.graphs.integration import INTEGRATE, MERGE, RESOLVE, turn_wait
from services.langgraph.graphs.state import FlowState, project_modules
from services.langgraph.graphs.steps import (
    AwaitedStep,
    Graph,
    PlainStep,
    add_awaited_step,
    add_plain_step,
    branch,
    forward_pct,
    guarded,
    report,
    route,
    route_awaited,
)
from services.langgraph.graphs.worker_steps import (
    commands_stream,
    record_run,
    run_record,
    set_project_status,
    store_pending_run,
)
from services.langgraph.naming import SCAFFOLDED, repo_full_name_of, results_stream
from services.langgraph.observe import observe_step
from services.langgraph.ports import FlowDeps
from shared import registry
from shared.contracts import (
    BaseResult,
    CreateWorkerCommand,
    CreateWorkerResponse,
    DeleteWorkerCommand,
    DeleteWorkerResponse,
    EngineeringResult,
    ProjectStatus,
    ScaffolderMessage,
    SendMessageCommand,
    SendMessageResponse,
    TaskStatus,
    WorkerConfig,
)
from shared.git import GitError
from shared.registry import RegistryError

__all__ = [
    "build_engineering_graph",
    "engineering_details",
    "engineering_result",
]

log = structlog.get_logger("services.langgraph.engineering")

EngineeringGraph = CompiledStateGraph[FlowState, FlowDeps, FlowState, FlowState]
_SHA = re.compile(r"\b[0-9a-f]{40}\b")


async def _prepare(state: FlowState, deps: FlowDeps) -> FlowState:
    project = await deps.api.get_project(state["project_id"])
    settings = deps.settings
    return FlowState(
        project_name=project.name,
        modules=project_modules(project, settings.default_modules),
        repo_full_name=repo_full_name_of(project, owner=settings.repo_owner),
        needs_scaffold=project.status not in SCAFFOLDED,
        branch=settings.branch_template.format(
            task_id=state["task_id"], project_id=state["project_id"]
        ),
        base_branch=settings.git.default_branch,
        worker_id=None,
        worker_deleted=False,
        integration=settings.integration,
        project_status=project.status.value,
    )


async def _scaffold_request(
    state: FlowState, deps: FlowDeps, request_id: str
) -> tuple[str, ScaffolderMessage, FlowState]:
    message = ScaffolderMessage(
        request_id=request_id,
        callback_stream=results_stream(),
        project_id=state["project_id"],
        repo_full_name=state["repo_full_name"],
        project_name=state["project_name"],
        modules=state["modules"],
    )
    return registry.get("scaffolder:queue").name, message, FlowState()


async def _scaffold_answer(state: FlowState, deps: FlowDeps, answer: dict[str, Any]) -> FlowState:
    result = BaseResult.model_validate(answer)
    if result.status != "success":
        raise StepFailedError("scaffold", result.error or f"scaffolder answered {result.status}")
    project = await deps.api.get_project(state["project_id"])
    owner = deps.settings.repo_owner
    return FlowState(
        repo_full_name=repo_full_name_of(project, owner=owner, step="scaffold"),
        project_status=project.status.value,
    )


async def _create_request(
    state: FlowState, deps: FlowDeps, request_id: str
) -> tuple[str, CreateWorkerCommand, FlowState]:
    full_name = state["repo_full_name"]
    # the project's status as `prepare` (or `scaffold`) read it a moment ago
    before = state.get("status_before") or state.get("project_status")
    if not before:  # a flow checkpointed before `prepare` kept it
        before = (await deps.api.get_project(state["project_id"])).status.value
    # every call at once; the project is `developing` from here, so any failure keeps
    # `status_before` and `finish` gives the project back
    kept = {"status_before": before}
    repo, base_sha, _, budget = await _at_once(
        kept,
        deps.git.get_repo(full_name),
        deps.git.head_of(full_name, state["base_branch"]),
        set_project_status(deps, state, ProjectStatus.DEVELOPING),
        _month_budget(state, deps),
    )
    if repo is None:
        raise StepFailedError("create_worker", f"repository {full_name} does not exist", kept=kept)
    settings = deps.settings
    command = CreateWorkerCommand(
        request_id=request_id,
        config=WorkerConfig(
            name=f"developer-{state['task_id'][:8]}",
            agent=settings.worker_agent,
            capabilities=list(settings.worker_capabilities),
            env_vars={},
        ),
        context={
            "profile": "developer",
            "task_id": state["task_id"],
            "project_id": state["project_id"],
            "repo_full_name": full_name,
            "repo_url": repo.clone_url,
            "branch": state["branch"],
            "base_branch": state["base_branch"],
            **budget,
        },
    )
    return commands_stream(), command, FlowState(base_sha=base_sha, status_before=before)


async def _at_once(kept: dict[str, Any], *calls: Awaitable[Any]) -> list[Any]:
    """The calls' results, run at once; the first expected failure (a failed step, git, a
    4xx of the API) fails the step keeping `kept`; anything else propagates (retried)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, StepFailedError):
            raise StepFailedError(result.step, result.reason, kept={**result.kept, **kept})
        if isinstance(result, (GitError, RegistryError)) or (
            isinstance(result, ApiCallError) and result.status_code in range(400, 500)
        ):
            raise StepFailedError("create_worker", str(result), kept=kept) from result
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def _month_budget(state: FlowState, deps: FlowDeps) -> dict[str, str]:
    """The task's hold on its user's monthly cap, as the cap and the spend the worker stops
    its agent at (`cap - hold` counts as spent: the agent may spend its hold). None without
    a cap; a cap with nothing left fails the step with the API's budget error; an unanswered
    question leaves the task cap alone in charge."""
    try:
        hold = await deps.api.hold_budget(state["task_id"])
    except ApiCallError as error:
        if error.code == "budget_exceeded":
            reason = str(error).split(": ", 1)[-1]  # the API's message, not its status line
            raise StepFailedError("create_worker", reason) from error
        log.warning("month_budget_unknown", task_id=state["task_id"], error=str(error)[:300])
        return {}
    if hold.monthly_cap_usd is None or hold.hold_usd is None:
        return {}
    return {
        "month_budget_usd": repr(hold.monthly_cap_usd),
        "month_spent_usd": repr(max(hold.monthly_cap_usd - hold.hold_usd, 0.0)),
    }


async def _create_answer(state: FlowState, deps: FlowDeps, answer: dict[str, Any]) -> FlowState:
    response = CreateWorkerResponse.model_validate(answer)
    if not response.success or not response.worker_id:
        raise StepFailedError("create_worker", response.error or "the worker was not created")
    return FlowState(worker_id=response.worker_id)


def spec_prompt(state: FlowState) -> str:
    """What the developer agent is asked: the task's spec and where to push."""
    spec = (state.get("spec") or "").strip() or "Implement the project's next task."
    return (
        f"{spec}\n\n"
        f"Repository: {state['repo_full_name']}. Work on the branch `{state['branch']}` "
        f"(start it from `{state['base_branch']}`), commit your changes, push the branch to "
        "the remote, and answer with the sha of your last commit."
    )


async def _send_request(
    state: FlowState, deps: FlowDeps, request_id: str
) -> tuple[str, SendMessageCommand, FlowState]:
    worker_id = state.get("worker_id")
    if not worker_id:
        raise StepFailedError("send_spec", "no worker to send the spec to")
    command = SendMessageCommand(
        request_id=request_id,
        worker_id=worker_id,
        message=spec_prompt(state),
        timeout=int(deps.settings.timeouts.agent_s),
    )
    return commands_stream(), command, FlowState()


async def _send_answer(state: FlowState, deps: FlowDeps, answer: dict[str, Any]) -> FlowState:
    response = SendMessageResponse.model_validate(answer)
    if response.success:  # its run's record is stored by the checks' request, off this path
        body, counted = run_record(state, "send_spec", response)
        pending = None if body is None else body.model_dump(mode="json")
        return FlowState(**counted, agent_response=response.response, pending_run=pending)
    recorded = await record_run(state, deps, "send_spec", response)
    error = response.error or "the agent did not answer"
    if await _worker_died(state, deps):
        return FlowState(**recorded, **await _replaceworker_of(state, deps, error))
    raise StepFailedError("send_spec", error, kept=recorded)


async def _worker_died(state: FlowState, deps: FlowDeps) -> bool:
    """True when the worker is dead (not its agent failed) and another one may be tried."""
    worker_id = state.get("worker_id")
    if not worker_id or state.get("worker_round", 1) >= deps.settings.worker_attempts:
        return False
    if await deps.workers.status(worker_id) != "failed":
        return False
    task = await deps.api.get_task(state["task_id"])
    return task.status == TaskStatus.RUNNING  # not failed or cancelled from outside meanwhile


async def _replaceworker_of(state: FlowState, deps: FlowDeps, error: str) -> FlowState:
    """Forget the dead worker: the flow goes back to `create_worker` for the next round."""
    round_ = state.get("worker_round", 1) + 1
    note = f"send_spec: {error}; the spec goes to a new worker ({round_} of "
    note += f"{deps.settings.worker_attempts})"
    await report(deps, state, SEND_SPEC.name, SEND_SPEC.pct, note)
    return FlowState(
        worker_id=None, worker_round=round_, warnings=[*state.get("warnings", []), note]
    )


async def _verify(state: FlowState, deps: FlowDeps) -> FlowState:
    """Find the agent's commit on the remote: the sha it named, else its branch's new head."""
    full_name, branch = state["repo_full_name"], state["branch"]
    base_sha = state.get("base_sha")
    branch_head, base_head = await deps.git.heads_of(full_name, [branch, state["base_branch"]])
    heads = {branch: branch_head, state["base_branch"]: base_head}
    sha: str | None = None
    for candidate in _SHA.findall(state.get("agent_response") or ""):
        if candidate == base_sha:
            continue
        # a head just read is on the remote: no need to ask again
        if candidate in heads.values() or await deps.git.commit_exists(full_name, candidate):
            sha = candidate
            break
    if sha is None:
        sha = next((head for head in heads.values() if head and head != base_sha), None)
    if sha is None:
        raise StepFailedError("verify", f"no new commit reached {full_name} (branch {branch})")
    return FlowState(task_head=sha, checks_after="spec")


async def _delete_request(
    state: FlowState, deps: FlowDeps, request_id: str
) -> tuple[str, DeleteWorkerCommand, FlowState]:
    command = DeleteWorkerCommand(request_id=request_id, worker_id=state.get("worker_id") or "")
    return commands_stream(), command, FlowState()


async def _delete_answer(state: FlowState, deps: FlowDeps, answer: dict[str, Any]) -> FlowState:
    response = DeleteWorkerResponse.model_validate(answer)
    if not response.success:
        raise StepFailedError("delete_worker", response.error or "the worker was not deleted")
    return FlowState(worker_deleted=True)


PREPARE = PlainStep("prepare", 5, "reading the project", _prepare, reads_only=True)
SCAFFOLD = AwaitedStep(
    "scaffold", 15, "scaffolding the project", lambda t: t.scaffold_s,
    _scaffold_request, _scaffold_answer,
)  # fmt: skip
CREATE_WORKER = AwaitedStep(
    "create_worker", 30, "starting a developer worker", lambda t: t.create_worker_s,
    _create_request, _create_answer, per_worker=True,
)  # fmt: skip
SEND_SPEC = AwaitedStep(
    "send_spec", 50, "the developer agent is working", lambda t: t.agent_s + t.create_worker_s,
    _send_request, _send_answer, per_worker=True,
)  # fmt: skip
VERIFY = PlainStep("verify", 50, "verifying the commit on the remote", _verify, reads_only=True)
DELETE_WORKER = AwaitedStep(
    "delete_worker", 90, "removing the developer worker", lambda t: t.delete_worker_s,
    _delete_request, _delete_answer, tolerant=True, quiet=True,
)  # fmt: skip
"""Cleanup after `finish`: the task's final status and result are recorded first (deleting
the worker is not the task's work), then the worker goes. A crash between the two resumes
the flow at this step from its checkpoint, so the worker is still deleted."""


def engineering_result(state: FlowState, succeeded: bool) -> EngineeringResult:
    """The flow's `EngineeringResult`: when it succeeded, the commit now on the base branch,
    that branch, and the files the task changed there."""
    return EngineeringResult(
        request_id=state["request_id"],
        status="success" if succeeded else "failed",
        error=None if succeeded else state.get("error") or "failed",
        files_changed=state.get("files_changed") if succeeded else None,
        commit_sha=state.get("commit_sha") if succeeded else None,
        branch=state.get("result_branch") if succeeded else None,
    )


def engineering_details(state: FlowState) -> dict[str, Any]:
    """What the task's stored result adds to `EngineeringResult`: the task branch, the
    merged sha, the checks (every run), the pull request, the agent's last answer."""
    runs = state.get("checks", [])
    return {
        "task_branch": state.get("branch"),
        "base_branch": state.get("base_branch"),
        "integration": state.get("integration"),
        "merged_sha": state.get("merged_sha"),
        "pull_request_url": state.get("pull_request_url"),
        "checks": {
            "rounds": len(runs),
            "fix_rounds": state.get("fix_round", 0),
            "passed": bool(runs) and bool(runs[-1].get("passed")),
            "runs": runs,
        },
        "conflict_files": state.get("conflict_files") or [],
        "agent_answer": state.get("agent_response"),
        "agent_cost_usd": round(state.get("agent_cost_usd", 0.0), 6),
        "agent_runs": state.get("agent_runs", 0),
    }


async def _on_end(state: FlowState, deps: FlowDeps) -> ProjectStatus | None:
    """The task ended: its integration turn is given back, and the status its project goes
    back to is sent with the task's final status (`TaskUpdate.project_status`): what it was
    (`active`, `failed`), else `scaffolded`. The API applies it in the same transaction
    unless another engineering task of the project is still open or the project left its
    work meanwhile (deploying...), through `developing` from `testing`."""
    await asyncio.gather(
        deps.store.leave_turn_queue(state["project_id"], state["task_id"]),
        deps.store.release_turn(state["project_id"], state["task_id"]),
        store_pending_run(state, deps),  # a flow stopped before its checks' request
    )
    before = state.get("status_before")
    if not before:
        return None  # the task never began its work
    if before in (ProjectStatus.ACTIVE.value, ProjectStatus.FAILED.value):
        return ProjectStatus(before)
    return ProjectStatus.SCAFFOLDED


def _cleanup(state: FlowState) -> str:
    """Where a flow that stopped goes: `finish` records its end (its worker goes after)."""
    return "finish"


def _after_finish(state: FlowState) -> str:
    if state.get("worker_id") and not state.get("worker_deleted"):
        return DELETE_WORKER.name
    return END


def _after_delete(state: FlowState) -> str:
    # a flow checkpointed before cleanup came after `finish` deleted its worker first
    return END if state.get("finished") else "finish"


async def _start(state: FlowState, *, runtime: Runtime[FlowDeps]) -> FlowState:
    """`start` and `prepare` in one node (one checkpoint): the task moved to running and
    the project read at once; the `prepare` node stays for flows checkpointed before it."""
    deps = runtime.context
    began_at = time.monotonic()
    began, prepared = await asyncio.gather(
        mark_running(deps, state),
        guarded(PREPARE.name, state, lambda: _prepare(state, deps)),
    )
    if began.get("outcome") is not None:  # the task ended already: nothing was prepared
        return began
    await announce_start(deps, state)
    if prepared.get("outcome") is None:
        await report(deps, state, PREPARE.name, PREPARE.pct, PREPARE.label)
        prepared = FlowState(**prepared, progress_pct=forward_pct(state, PREPARE.pct))
    observe_step(state, PREPARE.name, time.monotonic() - began_at, prepared)
    return FlowState(**began, **prepared)


def _after_start(state: FlowState) -> str:
    outcome = state.get("outcome", "running")
    if outcome == "skipped":
        return END
    if outcome != "running":
        return "finish"
    if state.get("repo_full_name"):  # prepared in `start`
        return _after_prepare(state)
    return PREPARE.name  # a flow checkpointed by a `start` that did not prepare


def _after_spec(state: FlowState) -> str:
    if state.get("outcome", "running") != "running":
        return _cleanup(state)
    return VERIFY.name if state.get("worker_id") else CREATE_WORKER.name  # it died: a new one


def _after_checks(state: FlowState) -> str:
    if state.get("outcome", "running") != "running":
        return _cleanup(state)
    return INTEGRATE.name if state.get("checks_next") == "integrate" else FIX.name


def _after_integrate(state: FlowState) -> str:
    if state.get("outcome", "running") != "running":
        return _cleanup(state)
    if state.get("integration_waiting"):
        return "integrate_turn"
    return "finish" if state.get("integrated") else MERGE.name


def _after_merge(state: FlowState) -> str:
    if state.get("outcome", "running") != "running":
        return _cleanup(state)
    return RESOLVE.name if state.get("merge_status") == "conflict" else CHECKS.name


def _after_prepare(state: FlowState) -> str:
    if state.get("outcome", "running") != "running":
        return "finish"
    return SCAFFOLD.name if state.get("needs_scaffold") else CREATE_WORKER.name


def build_engineering_graph(checkpointer: BaseCheckpointSaver[str]) -> EngineeringGraph:
    """The compiled engineering graph on a checkpointer."""
    graph: Graph = StateGraph(FlowState, context_schema=FlowDeps)
    graph.add_node("start", _start)
    add_plain_step(graph, PREPARE)  # flows checkpointed before `start` prepared
    for step in (SCAFFOLD, CREATE_WORKER, SEND_SPEC, CHECKS, FIX, MERGE, RESOLVE, DELETE_WORKER):
        add_awaited_step(graph, step)
    add_plain_step(graph, VERIFY)
    add_plain_step(graph, INTEGRATE)
    graph.add_node(
        "finish", finish(engineering_result, details=engineering_details, on_end=_on_end)
    )
    graph.add_edge(START, "start")
    branch(graph, "start", _after_start)
    branch(graph, PREPARE.name, _after_prepare)
    route_awaited(graph, SCAFFOLD, CREATE_WORKER.name, _cleanup)
    route_awaited(graph, CREATE_WORKER, SEND_SPEC.name, _cleanup)
    route(graph, SEND_SPEC.name, f"{SEND_SPEC.name}_wait", _cleanup)
    branch(graph, f"{SEND_SPEC.name}_wait", _after_spec)
    route(graph, VERIFY.name, CHECKS.name, _cleanup)
    route(graph, CHECKS.name, f"{CHECKS.name}_wait", _cleanup)
    branch(graph, f"{CHECKS.name}_wait", _after_checks)
    route_awaited(graph, FIX, CHECKS.name, _cleanup)
    branch(graph, INTEGRATE.name, _after_integrate)
    graph.add_node("integrate_turn", turn_wait)
    route(graph, "integrate_turn", INTEGRATE.name, _cleanup)
    route(graph, MERGE.name, f"{MERGE.name}_wait", _cleanup)
    branch(graph, f"{MERGE.name}_wait", _after_merge)
    route_awaited(graph, RESOLVE, MERGE.name, _cleanup)
    branch(graph, "finish", _after_finish)
    graph.add_edge(DELETE_WORKER.name, f"{DELETE_WORKER.name}_wait")
    branch(graph, f"{DELETE_WORKER.name}_wait", _after_delete)
    return graph.compile(checkpointer=checkpointer)
