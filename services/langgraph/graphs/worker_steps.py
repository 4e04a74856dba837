"""Helpers of the engineering flow's steps that talk to the developer worker and the API."""

from __future__ import annotations

import json
from typing import Any

import structlog

from services.langgraph.errors import ApiCallError, StepFailedError
from services.langgraph.graphs.state import FlowState
from services.langgraph.ports import FlowDeps
from shared import registry
from shared.contracts import ProjectStatus, SendMessageResponse

__all__ = ["agent_answer", "commands_stream", "report_of", "set_project_status", "worker_of"]

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


async def agent_answer(step: str, answer: dict[str, Any]) -> str | None:
    """The agent's answer text (a failed answer fails the step)."""
    response = SendMessageResponse.model_validate(answer)
    if not response.success:
        raise StepFailedError(step, response.error or "the agent did not answer")
    return response.response
