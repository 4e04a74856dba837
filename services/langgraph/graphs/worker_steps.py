"""Helpers of the engineering flow's steps that talk to the developer worker and the API."""

from __future__ import annotations

import json
from typing import Any

import structlog

from services.langgraph.errors import ApiCallError, StepFailedError
from services.langgraph.graphs.state import FlowState
from services.langgraph.ports import FlowDeps
from shared import registry
from shared.api_client.schemas import AgentRunCreate
from shared.contracts import ProjectStatus, SendMessageResponse

__all__ = [
    "agent_answer",
    "commands_stream",
    "record_run",
    "report_of",
    "run_record",
    "set_project_status",
    "store_pending_run",
    "store_run",
    "worker_of",
]

log = structlog.get_logger("services.langgraph.engineering")


def commands_stream() -> str:
    """The worker-manager's command stream."""
    return registry.get("worker:commands").name


async def set_project_status(deps: FlowDeps, state: FlowState, status: ProjectStatus) -> None:
    """Move the project to `status` when its lifecycle allows it (best effort: a project
    being deployed meanwhile keeps its status)."""
    try:
        await deps.api.set_project_status(state["project_id"], status)
    except ApiCallError as error:
        if not (error.is_conflict or _refused(error)):
            raise
        log.info("project_status_kept", project_id=state["project_id"], wanted=status.value)


def _refused(error: ApiCallError) -> bool:
    return error.status_code is not None and 400 <= error.status_code < 500


def worker_of(state: FlowState, step: str) -> str:
    """The task's developer worker (a step without one fails)."""
    worker_id = state.get("worker_id")
    if not worker_id:
        raise StepFailedError(step, "the task has no developer worker")
    return worker_id


def report_of(step: str, answer: dict[str, Any]) -> dict[str, Any]:
    """The JSON report a worker answered a directive with."""
    response = SendMessageResponse.model_validate(answer)
    if not response.success:
        raise StepFailedError(step, response.error or "the worker did not answer")
    try:
        report = json.loads(response.response or "")
    except ValueError:
        report = None
    if not isinstance(report, dict):
        raise StepFailedError(step, f"the worker's answer is not a report: {response.response!r}")
    return report


async def record_run(
    state: FlowState, deps: FlowDeps, step: str, response: SendMessageResponse
) -> FlowState:
    """Store the agent run's record through the API (a failure to store is logged, never
    fails the flow); the state's running cost and count of runs.

    The record's `run_key` is the request id of the step's command (`<task>~<step>[#n]`),
    the same when the answer is handled again after a crash: the API stores it once."""
    body, update = run_record(state, step, response)
    if body is not None:
        await store_run(state, deps, body)
    return update


def run_record(
    state: FlowState, step: str, response: SendMessageResponse
) -> tuple[AgentRunCreate | None, FlowState]:
    """The record of the answer's agent run (None: it reported none, or a record the API
    would refuse, logged) and the state's running cost and count of runs."""
    run = response.run
    if run is None:
        return None, FlowState()
    update = FlowState(
        agent_cost_usd=state.get("agent_cost_usd", 0.0) + run.cost_usd,
        agent_runs=state.get("agent_runs", 0) + 1,
    )
    fields = run.model_dump(exclude={"session_id"})
    try:
        body = AgentRunCreate.model_validate(
            {**fields, "step": step[:64], "run_key": response.request_id[:255] or None}
        )
    except ValueError as error:
        log.warning("agent_run_not_recorded", task_id=state["task_id"], error=str(error)[:500])
        return None, update
    return body, update


async def store_run(state: FlowState, deps: FlowDeps, body: AgentRunCreate) -> None:
    """Store an agent run's record (a failure is logged, never fails the flow)."""
    try:
        await deps.api.record_run(state["task_id"], body)
    except ApiCallError as error:
        log.warning("agent_run_not_recorded", task_id=state["task_id"], error=str(error)[:500])


async def store_pending_run(state: FlowState, deps: FlowDeps) -> None:
    """Store the spec's run record the flow kept (`pending_run`), if any: by the checks'
    request alongside its own call, else by the task's end (its `run_key` makes a second
    store after a crash a no-op)."""
    pending = state.get("pending_run")
    if pending:
        await store_run(state, deps, AgentRunCreate.model_validate(pending))


async def agent_answer(
    step: str, answer: dict[str, Any], state: FlowState, deps: FlowDeps
) -> tuple[str | None, FlowState]:
    """The agent's answer text and the state of its recorded run (a failed answer fails the
    step, after its run is recorded; the failure keeps the run's cost in the flow)."""
    response = SendMessageResponse.model_validate(answer)
    recorded = await record_run(state, deps, step, response)
    if not response.success:
        raise StepFailedError(step, response.error or "the agent did not answer", kept=recorded)
    return response.response, recorded
