"""The first and last node of every flow: `start` (task running) and `finish` (result)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from langgraph.runtime import Runtime

from services.langgraph.errors import ApiCallError
from services.langgraph.graphs.state import FlowState, Outcome
from services.langgraph.graphs.steps import Node
from services.langgraph.observe import observe_end
from services.langgraph.ports import FlowDeps
from shared.api_client.schemas import TaskUpdate
from shared.contracts import BaseResult, ProgressEvent, ProjectStatus, TaskStatus
from shared.messaging import MessagingError
from shared.registry import RegistryError

__all__ = [
    "Details",
    "EndHook",
    "ResultBuilder",
    "announce_start",
    "finish",
    "mark_running",
    "start",
]

log = structlog.get_logger("services.langgraph.common")

ResultBuilder = Callable[[FlowState, bool], BaseResult]
"""(state, succeeded) → the flow's result (`EngineeringResult`, `DeployResult`)."""
Details = Callable[[FlowState], dict[str, Any]]
"""state → what the task's stored `result` adds to the result's contract fields."""
EndHook = Callable[[FlowState, FlowDeps], Awaitable[ProjectStatus | None]]
"""Runs once the flow's outcome is known, before the task's final status is written; the
status the task's project goes back to, sent with that status (`TaskUpdate.project_status`:
the API applies it when no other engineering task of the project is open), or None."""


async def start(state: FlowState, *, runtime: Runtime[FlowDeps]) -> FlowState:
    """Move the task to running and announce it; stop at once when it already ended."""
    deps = runtime.context
    update = await mark_running(deps, state)
    if update.get("outcome") is None:
        await announce_start(deps, state)
    return update


async def mark_running(deps: FlowDeps, state: FlowState) -> FlowState:
    """The task moved to running: its spec and when its status was read; or the flow's
    outcome when the task already ended (`cancelled`, else `skipped`)."""
    task_id = state["task_id"]
    read_at = deps.clock_s()
    try:
        # one request: queued → running (running stays running); the API refuses it (409)
        # when the task already ended, which is then read to tell how
        task = await deps.api.update_task(task_id, TaskUpdate(status=TaskStatus.RUNNING))
    except ApiCallError as error:
        if not error.is_conflict:
            raise
        task = await deps.api.get_task(task_id)
    if task.status == TaskStatus.CANCELLED:
        return FlowState(outcome="cancelled", error="task cancelled", failed_step="start")
    if task.status in (TaskStatus.COMPLETED, TaskStatus.FAILED):
        return FlowState(outcome="skipped")
    return FlowState(spec=task.spec, status_read_at=read_at)


async def announce_start(deps: FlowDeps, state: FlowState) -> None:
    """The task's `started` progress event."""
    event = ProgressEvent(
        type="started",
        request_id=state["request_id"],
        task_id=state["task_id"],
        message="task started",
        progress_pct=0,
        current_step="start",
    )
    await deps.bus.progress(state["task_id"], event)


def finish(
    build_result: ResultBuilder, *, details: Details | None = None, on_end: EndHook | None = None
) -> Node:
    """The last node: the task's final status and result (the result's fields plus
    `details`), the result on the callback stream, and the terminal progress event."""

    async def node(state: FlowState, *, runtime: Runtime[FlowDeps]) -> FlowState:
        deps = runtime.context
        outcome: Outcome = state.get("outcome", "running")
        if outcome == "running":
            outcome = "completed"
        back = None
        if on_end is not None:
            back = await on_end({**state, "outcome": outcome}, deps)
        extra = details(state) if details is not None else {}
        if outcome != "cancelled":
            outcome = await _record(deps, state, outcome, build_result, extra, back)
        else:
            await _record_cancelled(deps, state, build_result, extra, back)
        result = build_result({**state, "outcome": outcome}, outcome == "completed")
        observe_end(state, outcome)
        await _publish_result(deps, state, result)
        await deps.bus.progress(state["task_id"], _terminal_event(state, outcome))
        return FlowState(outcome=outcome, finished=True)

    node.__name__ = "finish"
    return node


async def _record(
    deps: FlowDeps,
    state: FlowState,
    outcome: Outcome,
    build_result: ResultBuilder,
    extra: dict[str, Any],
    back: ProjectStatus | None,
) -> Outcome:
    """Write the final status and result (and the project's status back, in the same
    request); a task cancelled or failed meanwhile keeps its status and result (the API
    refuses to change them, and the whole request: the project is given back after)."""
    succeeded = outcome == "completed"
    result = build_result({**state, "outcome": outcome}, succeeded)
    status = TaskStatus.COMPLETED if succeeded else TaskStatus.FAILED
    change = TaskUpdate(status=status, result={**extra, **result.model_dump(mode="json")})
    if back is not None:
        change.project_status = back
    try:
        await deps.api.update_task(state["task_id"], change)
    except ApiCallError as error:
        if not error.is_conflict:
            raise
        task = await deps.api.get_task(state["task_id"])
        if task.status == TaskStatus.CANCELLED:
            await _record_cancelled(deps, state, build_result, extra, back)
            return "cancelled"
        if task.status == TaskStatus.FAILED:  # e.g. by the scheduler, past its deadline
            log.warning("task_failed_elsewhere", task_id=state["task_id"], outcome=outcome)
            await _give_back(deps, state, back)
            return "failed"
        if task.status != status:
            raise
        await _give_back(deps, state, back)  # recorded before, with another result
    return outcome


async def _give_back(deps: FlowDeps, state: FlowState, back: ProjectStatus | None) -> None:
    """The project's status back, alone (the task ended with a status of its own)."""
    if back is None:
        return
    try:
        await deps.api.update_task(state["task_id"], TaskUpdate(project_status=back))
    except ApiCallError as error:
        if not error.status_code or error.status_code >= 500:
            raise
        log.warning("project_status_not_restored", task_id=state["task_id"], error=str(error))


async def _record_cancelled(
    deps: FlowDeps,
    state: FlowState,
    build_result: ResultBuilder,
    extra: dict[str, Any],
    back: ProjectStatus | None = None,
) -> None:
    """Keep why a cancelled task stopped in its result (its status is already cancelled),
    and give its project back in the same request."""
    result = build_result({**state, "outcome": "cancelled", "error": "task cancelled"}, False)
    change = TaskUpdate(result={**extra, **result.model_dump(mode="json")})
    if back is not None:
        change.project_status = back
    try:
        await deps.api.update_task(state["task_id"], change)
    except ApiCallError as error:
        if error.status_code is None or error.status_code >= 500:
            raise
        log.warning("cancelled_result_not_recorded", task_id=state["task_id"], error=str(error))


async def _publish_result(deps: FlowDeps, state: FlowState, result: BaseResult) -> None:
    callback = state.get("callback_stream")
    if not callback:
        return
    try:
        await deps.bus.publish(callback, result, correlation_id=state["correlation_id"])
    except (RegistryError, MessagingError) as error:
        log.error("result_undeliverable", callback_stream=callback, error=str(error))


def _terminal_event(state: FlowState, outcome: Outcome) -> ProgressEvent:
    if outcome == "completed":
        return ProgressEvent(
            type="completed",
            request_id=state["request_id"],
            task_id=state["task_id"],
            message="task completed",
            progress_pct=100,
            current_step="finish",
        )
    error = "task cancelled" if outcome == "cancelled" else state.get("error") or "failed"
    return ProgressEvent(
        type="failed",
        request_id=state["request_id"],
        task_id=state["task_id"],
        message=f"task {outcome}",
        current_step=state.get("failed_step") or "finish",
        error=error,
    )
