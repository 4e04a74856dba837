"""The engineering flow: scaffold if needed → developer worker → spec → verify → cleanup.

```
start → prepare → [scaffold → scaffold_wait] → create_worker → create_worker_wait
      → send_spec → send_spec_wait → verify → delete_worker → delete_worker_wait → finish
```
When the developer worker dies under the spec (the worker registry marks it `failed`: its
process is gone or its heartbeat lost, e.g. after a crash of the whole system), the flow goes
back to `create_worker` with a new worker, up to `worker_attempts` workers per task; an agent
that fails on a live worker fails the task at once.
A flow that stops (failed, cancelled) goes to `delete_worker` when it has a worker, then to
`finish`, which records the task's final status and publishes the `EngineeringResult`.
"""

from __future__ import annotations

import re
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from services.langgraph.errors import StepFailedError
from services.langgraph.graphs.common import finish, start
from services.langgraph.graphs.state import FlowState
from services.langgraph.graphs.steps import (
    AwaitedStep,
    Graph,
    PlainStep,
    add_awaited_step,
    add_plain_step,
    report,
    route,
    route_awaited,
)
from services.langgraph.naming import SCAFFOLDED, repo_full_name_of, results_stream
from services.langgraph.ports import FlowDeps
from shared import registry
from shared.contracts import (
    BaseResult,
    CreateWorkerCommand,
    CreateWorkerResponse,
    DeleteWorkerCommand,
    DeleteWorkerResponse,
    EngineeringResult,
    ScaffolderMessage,
    SendMessageCommand,
    SendMessageResponse,
    TaskStatus,
    WorkerConfig,
)

__all__ = ["build_engineering_graph", "engineering_result"]

EngineeringGraph = CompiledStateGraph[FlowState, FlowDeps, FlowState, FlowState]
_SHA = re.compile(r"\b[0-9a-f]{40}\b")


def _commands() -> str:
    return registry.get("worker:commands").name


async def _prepare(state: FlowState, deps: FlowDeps) -> FlowState:
    project = await deps.api.get_project(state["project_id"])
    settings = deps.settings
    return FlowState(
        project_name=project.name,
        modules=list(settings.default_modules),
        repo_full_name=repo_full_name_of(project, owner=settings.repo_owner),
        needs_scaffold=project.status not in SCAFFOLDED,
        branch=settings.branch_template.format(
            task_id=state["task_id"], project_id=state["project_id"]
        ),
        base_branch=settings.git.default_branch,
        worker_id=None,
        worker_deleted=False,
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
    return FlowState(repo_full_name=repo_full_name_of(project, owner=owner, step="scaffold"))


async def _create_request(
    state: FlowState, deps: FlowDeps, request_id: str
) -> tuple[str, CreateWorkerCommand, FlowState]:
    full_name = state["repo_full_name"]
    repo = await deps.git.get_repo(full_name)
    if repo is None:
        raise StepFailedError("create_worker", f"repository {full_name} does not exist")
    base_sha = await deps.git.head_of(full_name, state["base_branch"])
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
        },
    )
    return _commands(), command, FlowState(base_sha=base_sha)


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
    return _commands(), command, FlowState()


async def _send_answer(state: FlowState, deps: FlowDeps, answer: dict[str, Any]) -> FlowState:
    response = SendMessageResponse.model_validate(answer)
    if not response.success:
        error = response.error or "the agent did not answer"
        if await _worker_died(state, deps):
            return await _replace_worker(state, deps, error)
        raise StepFailedError("send_spec", error)
    return FlowState(agent_response=response.response)


async def _worker_died(state: FlowState, deps: FlowDeps) -> bool:
    """True when the worker is dead (not its agent failed) and another one may be tried."""
    worker_id = state.get("worker_id")
    if not worker_id or state.get("worker_round", 1) >= deps.settings.worker_attempts:
        return False
    if await deps.workers.status(worker_id) != "failed":
        return False
    task = await deps.api.get_task(state["task_id"])
    return task.status == TaskStatus.RUNNING  # not failed or cancelled from outside meanwhile


async def _replace_worker(state: FlowState, deps: FlowDeps, error: str) -> FlowState:
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
    heads = {
        branch: await deps.git.head_of(full_name, branch),
        state["base_branch"]: await deps.git.head_of(full_name, state["base_branch"]),
    }
    sha: str | None = None
    for candidate in _SHA.findall(state.get("agent_response") or ""):
        if candidate != base_sha and await deps.git.commit_exists(full_name, candidate):
            sha = candidate
            break
    if sha is None:
        sha = next((head for head in heads.values() if head and head != base_sha), None)
    if sha is None:
        raise StepFailedError("verify", f"no new commit reached {full_name} (branch {branch})")
    on_branch = next((name for name, head in heads.items() if head == sha), branch)
    files = await deps.git.files_changed(full_name, sha)
    return FlowState(commit_sha=sha, branch=on_branch, files_changed=files)


async def _delete_request(
    state: FlowState, deps: FlowDeps, request_id: str
) -> tuple[str, DeleteWorkerCommand, FlowState]:
    command = DeleteWorkerCommand(request_id=request_id, worker_id=state.get("worker_id") or "")
    return _commands(), command, FlowState()


async def _delete_answer(state: FlowState, deps: FlowDeps, answer: dict[str, Any]) -> FlowState:
    response = DeleteWorkerResponse.model_validate(answer)
    if not response.success:
        raise StepFailedError("delete_worker", response.error or "the worker was not deleted")
    return FlowState(worker_deleted=True)


PREPARE = PlainStep("prepare", 5, "reading the project", _prepare)
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
VERIFY = PlainStep("verify", 80, "verifying the commit on the remote", _verify)
DELETE_WORKER = AwaitedStep(
    "delete_worker", 90, "removing the developer worker", lambda t: t.delete_worker_s,
    _delete_request, _delete_answer, tolerant=True,
)  # fmt: skip


def engineering_result(state: FlowState, succeeded: bool) -> EngineeringResult:
    """The flow's `EngineeringResult` (files, commit and branch when it succeeded)."""
    return EngineeringResult(
        request_id=state["request_id"],
        status="success" if succeeded else "failed",
        error=None if succeeded else state.get("error") or "failed",
        files_changed=state.get("files_changed") if succeeded else None,
        commit_sha=state.get("commit_sha") if succeeded else None,
        branch=state.get("branch") if succeeded else None,
    )


def _cleanup(state: FlowState) -> str:
    if state.get("worker_id") and not state.get("worker_deleted"):
        return DELETE_WORKER.name
    return "finish"


def _after_start(state: FlowState) -> str:
    outcome = state.get("outcome", "running")
    if outcome == "skipped":
        return END
    return PREPARE.name if outcome == "running" else "finish"


def _after_spec(state: FlowState) -> str:
    if state.get("outcome", "running") != "running":
        return _cleanup(state)
    return VERIFY.name if state.get("worker_id") else CREATE_WORKER.name  # it died: a new one


def _after_prepare(state: FlowState) -> str:
    if state.get("outcome", "running") != "running":
        return "finish"
    return SCAFFOLD.name if state.get("needs_scaffold") else CREATE_WORKER.name


def build_engineering_graph(checkpointer: BaseCheckpointSaver[str]) -> EngineeringGraph:
    """The compiled engineering graph on a checkpointer."""
    graph: Graph = StateGraph(FlowState, context_schema=FlowDeps)
    graph.add_node("start", start)
    add_plain_step(graph, PREPARE)
    for step in (SCAFFOLD, CREATE_WORKER, SEND_SPEC, DELETE_WORKER):
        add_awaited_step(graph, step)
    add_plain_step(graph, VERIFY)
    graph.add_node("finish", finish(engineering_result))
    graph.add_edge(START, "start")
    graph.add_conditional_edges("start", _after_start)
    graph.add_conditional_edges(PREPARE.name, _after_prepare)
    route_awaited(graph, SCAFFOLD, CREATE_WORKER.name, _cleanup)
    route_awaited(graph, CREATE_WORKER, SEND_SPEC.name, _cleanup)
    route(graph, SEND_SPEC.name, f"{SEND_SPEC.name}_wait", _cleanup)
    graph.add_conditional_edges(f"{SEND_SPEC.name}_wait", _after_spec)
    route(graph, VERIFY.name, DELETE_WORKER.name, _cleanup)
    graph.add_edge(DELETE_WORKER.name, f"{DELETE_WORKER.name}_wait")
    graph.add_edge(f"{DELETE_WORKER.name}_wait", "finish")
    graph.add_edge("finish", END)
    return graph.compile(checkpointer=checkpointer)
