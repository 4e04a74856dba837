"""The deploy flow: pin the commit, allocate a server and port → Ansible deploy → health
check → the deploy history and the project's status → result.

```
start → allocate → deploy → deploy_wait → health_check → record → finish
            │          │         │ cancelled
            │          │         ▼
            │          │     deploy_stop → deploy_stop_wait ─┐
            └──────────┴─ cancelled ──────────────────────────┴→ release_port → record → finish
```
Pinned deploys. `allocate` resolves the commit once, when the flow starts: the commit a
deploy task's spec names (`commit <sha>`, a rollback; it must exist in the repository), else
the head of the base branch (`settings.git.default_branch`) as it is now. The checkpoint
keeps it, so a replay deploys the same commit. infra-service gets it in the contract's
`repo_full_name` as `owner/name@<sha>` (`shared.deploys`: the contract has no commit field)
and releases exactly that commit; the task's `result` adds `deployed_sha` (and
`requested_sha`, `kind`, `previous_serves`) beside the contract's `DeployResult` fields.

History and status. Once the commit is known, the deploy is recorded in the project's
history (`running`) and the project moves to `deploying`; `record` writes how it ended
(`succeeded`, `failed`, `cancelled`) and moves the project on: `active` when a release of it
serves (the new one; or, after a failed or cancelled release, the previous one that
infra-service kept or put back), `failed` when the release failed and nothing of the
project serves, `scaffolded` when a cancelled first deploy left nothing. A status change
the lifecycle refuses (the project was archived meanwhile) is a warning, never a failure.

The port comes from the API's allocation of the project on the server, so a second deploy
of a project gets the same port and replaces the running service. Secrets travel only as
references (`github_token_ref`, `secrets_ref`); infra-service resolves them.

Cancellation. infra-service watches the task itself (it asks the API while its job runs),
kills the playbook and undoes what the job did: a first deploy leaves nothing, a redeploy
leaves the previous release running. A flow cancelled while infra-service works
(`deploy_wait`) waits for infra-service's answer to its deploy request (`deploy_stop_wait`,
at most `timeouts.deploy_stop_s`): that answer's `deployed_url` tells whether the project
still runs on its port. `release_port` then frees the allocation only when nothing runs on
it any more: after infra-service said so, or when the flow was cancelled before it asked for
a deploy and the allocation was new; and only when no other deploy task of the project is
queued or running (that one reuses the port). Without an answer in time, the allocation is
kept (a warning says why): a port is never freed under a process that may still listen on
it. A cancellation once the deploy succeeded (during `health_check`) keeps the live release
and its port. The task ends `cancelled` in every case.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import structlog
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from services.langgraph.errors import ApiCallError, StepFailedError
from services.langgraph.graphs.common import finish, start
from services.langgraph.graphs.state import FlowState, Resume, project_modules
from services.langgraph.graphs.steps import (
    AwaitedStep,
    Graph,
    PlainStep,
    add_awaited_step,
    add_plain_step,
    branch,
    report,
    route,
)
from services.langgraph.naming import SCAFFOLDED, repo_full_name_of, results_stream
from services.langgraph.ports import FlowDeps
from services.langgraph.store import PendingWait
from shared import registry
from shared.api_client.schemas import DeployOutcome, DeployRecord, ServerDTO, ServerStatus
from shared.contracts import (
    AnsibleDeployMessage,
    AnsibleDeployResult,
    DeployResult,
    ProjectDTO,
    ProjectStatus,
    TaskStatus,
)
from shared.deploys import commit_of_spec, pin_repo

__all__ = ["build_deploy_graph", "deploy_extras", "deploy_result"]

DeployGraph = CompiledStateGraph[FlowState, FlowDeps, FlowState, FlowState]
STOP = "deploy_stop"
RELEASE_PORT = "release_port"
RECORD = "record"

log = structlog.get_logger("services.langgraph.deploy")


_SETTING_UP = (ServerStatus.PENDING_SETUP, ServerStatus.PROVISIONING)
_SERVER_POLL_S = 1.0


async def _ready_servers(deps: FlowDeps) -> list[ServerDTO]:
    """The ready servers; while none is ready but some are being set up, wait for them up to
    `timeouts.server_ready_s` (a deploy asked for right after `orchestrator up` would
    otherwise fail while the scheduler provisions the local server)."""
    deadline = time.monotonic() + deps.settings.timeouts.server_ready_s
    while True:
        servers = await deps.api.list_servers()
        ready = [server for server in servers if server.status == ServerStatus.READY]
        pending = [server.handle for server in servers if server.status in _SETTING_UP]
        if ready:
            return ready
        if not pending:
            raise StepFailedError("allocate", "no server is ready to host the project")
        if time.monotonic() >= deadline:
            raise StepFailedError(
                "allocate",
                f"no server became ready within {deps.settings.timeouts.server_ready_s:g}s "
                f"(still being set up: {', '.join(pending)})",
            )
        await asyncio.sleep(_SERVER_POLL_S)


def _deployable(project: ProjectDTO) -> bool:
    """The project's repository holds the scaffold (a failed project: when it has one)."""
    if not project.repository_url:
        return False
    return project.status in SCAFFOLDED or project.status == ProjectStatus.FAILED


async def _resolve(state: FlowState, deps: FlowDeps, full_name: str) -> tuple[str, str]:
    """The commit to deploy and the kind of deploy: the spec's `commit <sha>` (rollback),
    else the base branch's head now."""
    try:
        pinned = commit_of_spec(state.get("spec"))
    except ValueError as error:
        raise StepFailedError("allocate", str(error)) from None
    if pinned is not None:
        if not await deps.git.commit_exists(full_name, pinned):
            raise StepFailedError("allocate", f"commit {pinned} is not in {full_name}")
        return pinned, "rollback"
    branch = deps.settings.git.default_branch
    head = await deps.git.head_of(full_name, branch)
    if head is None:
        raise StepFailedError("allocate", f"{full_name} has no branch {branch} to deploy")
    return head, "deploy"


async def _allocate(state: FlowState, deps: FlowDeps) -> FlowState:
    project = await deps.api.get_project(state["project_id"])
    if not _deployable(project):
        raise StepFailedError("allocate", f"project {project.name} is not scaffolded yet")
    full_name = repo_full_name_of(project, owner=deps.settings.repo_owner, step="allocate")
    sha, kind = await _resolve(state, deps, full_name)
    servers = await _ready_servers(deps)
    chosen = min(servers, key=lambda s: s.allocated / max(s.capacity, 1))
    for server in servers:  # a project deployed before goes back to its own server and port
        allocations = await deps.api.list_allocations(server.handle)
        if any(a.project_id == state["project_id"] for a in allocations):
            chosen = server
            break
    allocation = await deps.api.allocate_port(chosen.handle, state["project_id"])
    record = DeployRecord(sha=sha, kind="rollback" if kind == "rollback" else "deploy")
    await deps.api.record_deploy(state["project_id"], state["task_id"], record)
    deploying = await _set_status(deps, state, ProjectStatus.DEPLOYING)
    log.info("deploy_pinned", task_id=state["task_id"], sha=sha, kind=kind)
    return FlowState(
        project_name=project.name,
        repo_full_name=full_name,
        modules=project_modules(project, deps.settings.default_modules),
        server_handle=chosen.handle,
        server_ip=chosen.address,
        port=allocation.port,
        project_running=allocation.reused,
        deploy_sha=sha,
        deploy_kind=kind,
        project_deploying=deploying,
    )


async def _set_status(deps: FlowDeps, state: FlowState, status: ProjectStatus) -> bool:
    """Move the project to `status`; False (logged) when the lifecycle refuses it."""
    try:
        await deps.api.set_project_status(state["project_id"], status)
    except ApiCallError as error:
        if not error.is_conflict:
            raise
        log.warning("project_status_refused", project_id=state["project_id"], error=str(error))
        return False
    return True


async def _deploy_request(
    state: FlowState, deps: FlowDeps, request_id: str
) -> tuple[str, AnsibleDeployMessage, FlowState]:
    settings = deps.settings
    message = AnsibleDeployMessage(
        request_id=request_id,
        callback_stream=results_stream(),
        project_id=state["project_id"],
        project_name=state["project_name"],
        repo_full_name=pin_repo(state["repo_full_name"], state["deploy_sha"]),
        server_ip=state["server_ip"],
        port=state["port"],
        modules=state.get("modules"),
        github_token_ref=settings.github_token_ref,
        secrets_ref=settings.secrets_ref_template.format(
            data_dir=settings.data_dir.resolve(), project_id=state["project_id"]
        ),
    )
    return registry.get("ansible:deploy:queue").name, message, FlowState(project_running=True)


async def _deploy_answer(state: FlowState, deps: FlowDeps, answer: dict[str, Any]) -> FlowState:
    result = AnsibleDeployResult.model_validate(answer)
    if result.status != "success":
        if (await deps.api.get_task(state["task_id"])).status == TaskStatus.CANCELLED:
            # infra-service saw the cancellation first; deploy_stop_wait reads its answer
            return FlowState(outcome="cancelled", failed_step="deploy", error="task cancelled")
        detail = result.error or f"deploy answered {result.status}"
        if result.exit_code is not None:
            detail = f"{detail} (exit code {result.exit_code})"
        serves = bool(result.deployed_url)  # infra-service kept or put back the previous one
        log.info("step_failed", step="deploy", error=detail, previous_serves=serves)
        return FlowState(
            outcome="failed",
            failed_step="deploy",
            error=f"deploy: {detail}",
            project_running=serves,
            previous_serves=serves,
        )
    if result.deployed_url is None and _bot_only(state):
        return FlowState()  # no web service, no URL: infra-service checked its bot runs
    url = result.deployed_url or f"http://{state['server_ip']}:{state['port']}/"
    return FlowState(deployed_url=url)


def _bot_only(state: FlowState) -> bool:
    """A project whose modules serve no web (the `telegram` bot alone)."""
    modules = state.get("modules") or []
    return bool(modules) and "backend" not in modules


async def _health_check(state: FlowState, deps: FlowDeps) -> FlowState:
    url = state.get("deployed_url")
    if not url:  # a bot-only release: infra-service saw its processes keep running
        return FlowState()
    if not await deps.health.answers(url, timeout_s=deps.settings.timeouts.health_check_s):
        timeout_s = deps.settings.timeouts.health_check_s
        raise StepFailedError("health_check", f"{url} did not answer 200 within {timeout_s:g}s")
    return FlowState()


ALLOCATE = PlainStep("allocate", 10, "pinning the commit, allocating a server and port", _allocate)
DEPLOY = AwaitedStep(
    "deploy", 30, "deploying with Ansible", lambda t: t.deploy_s, _deploy_request, _deploy_answer
)
HEALTH_CHECK = PlainStep("health_check", 85, "checking the deployed URL", _health_check)


async def _stop(state: FlowState, *, runtime: Runtime[FlowDeps]) -> FlowState:
    """The task was cancelled while infra-service deploys: give it time to stop and undo."""
    deps = runtime.context
    await report(deps, state, STOP, 90, "task cancelled: waiting for the deploy to be undone")
    return FlowState(deadline_at=deps.clock_s() + deps.settings.timeouts.deploy_stop_s)


async def _stop_wait(state: FlowState, *, runtime: Runtime[FlowDeps]) -> FlowState:
    """infra-service's answer to the cancelled deploy: does the project still run?"""
    deps = runtime.context
    request_id = DEPLOY.request_id(state)
    answer = await deps.store.get_answer(request_id)
    if answer is None:
        wait = PendingWait(request_id=request_id, step=STOP, deadline_at=state["deadline_at"])
        await deps.store.set_wait(state["task_id"], wait)
        resume = cast(Resume, interrupt(wait.model_dump()))
        if resume.get("kind") == "answer":
            answer = await deps.store.get_answer(request_id)
    await deps.store.clear_wait(state["task_id"])
    if answer is None:
        timeout_s = deps.settings.timeouts.deploy_stop_s
        note = f"{STOP}: no word from infra-service within {timeout_s:g}s; the port stays allocated"
        return FlowState(warnings=[*state.get("warnings", []), note])
    result = AnsibleDeployResult.model_validate(answer)
    return FlowState(project_running=result.status == "success" or bool(result.deployed_url))


async def _release_port(state: FlowState, *, runtime: Runtime[FlowDeps]) -> FlowState:
    """Free the allocation of a cancelled deploy when nothing of the project runs on it."""
    deps = runtime.context
    handle, port = state.get("server_handle"), state.get("port")
    if handle is None or port is None or state.get("project_running", True):
        return FlowState()
    others = await deps.api.active_deploys(state["project_id"]) - {state["task_id"]}
    if others:  # another deploy of the project gets (or got) this port: it is not ours to free
        note = f"{RELEASE_PORT}: port {port} kept for deploy task {min(others)}"
        return FlowState(warnings=[*state.get("warnings", []), note])
    try:
        await deps.api.release_port(handle, state["project_id"])
    except ApiCallError as error:
        if error.status_code is None or error.status_code >= 500:
            raise  # the API is down: the node is run again
        if not error.is_not_found:
            note = f"{RELEASE_PORT}: port {port} not released: {error}"
            return FlowState(warnings=[*state.get("warnings", []), note])
    log.info("port_released", task_id=state["task_id"], server=handle, port=port)
    await report(deps, state, RELEASE_PORT, 95, f"port {port} on {handle} released")
    return FlowState()


def _succeeded(state: FlowState) -> bool:
    return state.get("outcome", "running") in ("running", "completed")


async def _record(state: FlowState, *, runtime: Runtime[FlowDeps]) -> FlowState:
    """The deploy's end in the project's history, and the project's status after it."""
    deps = runtime.context
    sha = state.get("deploy_sha")
    if sha is None:
        return FlowState()  # stopped before the commit was resolved: nothing was recorded
    outcome = state.get("outcome", "running")
    succeeded = _succeeded(state)
    warnings = list(state.get("warnings", []))
    record = DeployRecord(
        sha=sha,
        kind="rollback" if state.get("deploy_kind") == "rollback" else "deploy",
        outcome=DeployOutcome.SUCCEEDED
        if succeeded
        else DeployOutcome.CANCELLED
        if outcome == "cancelled"
        else DeployOutcome.FAILED,
        url=state.get("deployed_url") if succeeded else None,
        previous_serves=None if succeeded else state.get("previous_serves", False),
        error=None if succeeded else state.get("error"),
    )
    try:
        await deps.api.record_deploy(state["project_id"], state["task_id"], record)
    except ApiCallError as error:
        if error.status_code is None or error.status_code >= 500:
            raise  # the API is down: the node is run again
        warnings.append(f"{RECORD}: the deploy history was not updated: {error}")
    if state.get("project_deploying"):
        status = _status_after(state, succeeded)
        if not await _set_status(deps, state, status):
            warnings.append(f"{RECORD}: project status {status.value} refused")
    return FlowState(warnings=warnings)


def _status_after(state: FlowState, succeeded: bool) -> ProjectStatus:
    """`active` while a release of the project serves; else `failed` (or, after a cancelled
    first deploy that left nothing, `scaffolded`)."""
    if succeeded:
        return ProjectStatus.ACTIVE
    if state.get("outcome") == "cancelled":
        return ProjectStatus.ACTIVE if state.get("project_running") else ProjectStatus.SCAFFOLDED
    return ProjectStatus.ACTIVE if state.get("previous_serves") else ProjectStatus.FAILED


def deploy_extras(state: FlowState) -> dict[str, Any]:
    """What the task's `result` adds to the contract's `DeployResult` fields."""
    sha = state.get("deploy_sha")
    succeeded = _succeeded(state)
    return {
        "deployed_sha": sha if succeeded else None,
        "requested_sha": sha,
        "kind": state.get("deploy_kind"),
        "previous_serves": None if succeeded else state.get("previous_serves", False),
    }


def deploy_result(state: FlowState, succeeded: bool) -> DeployResult:
    """The flow's `DeployResult` (url, server address, port when it succeeded)."""
    return DeployResult(
        request_id=state["request_id"],
        status="success" if succeeded else "failed",
        error=None if succeeded else state.get("error") or "failed",
        deployed_url=state.get("deployed_url") if succeeded else None,
        server_ip=state.get("server_ip"),
        port=state.get("port"),
    )


def _to_record(state: FlowState) -> str:
    return RECORD


def _to_release(state: FlowState) -> str:
    return RELEASE_PORT if state.get("outcome") == "cancelled" else RECORD


def _to_stop(state: FlowState) -> str:
    return STOP if state.get("outcome") == "cancelled" else RECORD


def _after_start(state: FlowState) -> str:
    outcome = state.get("outcome", "running")
    if outcome == "skipped":
        return END
    return ALLOCATE.name if outcome == "running" else "finish"


def build_deploy_graph(checkpointer: BaseCheckpointSaver[str]) -> DeployGraph:
    """The compiled deploy graph on a checkpointer."""
    graph: Graph = StateGraph(FlowState, context_schema=FlowDeps)
    graph.add_node("start", start)
    add_plain_step(graph, ALLOCATE)
    add_awaited_step(graph, DEPLOY)
    add_plain_step(graph, HEALTH_CHECK)
    graph.add_node(STOP, _stop)
    graph.add_node(f"{STOP}_wait", _stop_wait)
    graph.add_node(RELEASE_PORT, _release_port)
    graph.add_node(RECORD, _record)
    graph.add_node("finish", finish(deploy_result, details=deploy_extras))
    graph.add_edge(START, "start")
    branch(graph, "start", _after_start)
    route(graph, ALLOCATE.name, DEPLOY.name, _to_release)
    route(graph, DEPLOY.name, f"{DEPLOY.name}_wait", _to_release)
    route(graph, f"{DEPLOY.name}_wait", HEALTH_CHECK.name, _to_stop)
    route(graph, HEALTH_CHECK.name, RECORD, _to_record)
    graph.add_edge(STOP, f"{STOP}_wait")
    graph.add_edge(f"{STOP}_wait", RELEASE_PORT)
    graph.add_edge(RELEASE_PORT, RECORD)
    graph.add_edge(RECORD, "finish")
    graph.add_edge("finish", END)
    return graph.compile(checkpointer=checkpointer)
