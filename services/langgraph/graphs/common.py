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
from shared.contracts import BaseResult, ProgressEvent, TaskStatus
from shared.messaging import MessagingError
from shared.registry import RegistryError

__all__ = ["Details", "EndHook", "ResultBuilder", "finish", "start"]

log = structlog.get_logger("services.langgraph.common")

ResultBuilder = Callable[[FlowState, bool], BaseResult]
"""(state, succeeded) → the flow's result (`EngineeringResult`, `DeployResult`)."""
Details = Callable[[FlowState], dict[str, Any]]
"""state → what the task's stored `result` adds to the result's contract fields."""
EndHook = Callable[[FlowState, FlowDeps], Awaitable[None]]
"""Runs once the flow's outcome is known, before the task's final status is written."""


async def start(state: FlowState, *, runtime: Runtime[FlowDeps]) -> FlowState:
    """Move the task to running and announce it; stop at once when it already ended."""
    deps = runtime.context
    task_id = state["task_id"]
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
    event = ProgressEvent(
        type="started",
        request_id=state["request_id"],
        task_id=task_id,
        message="task started",
        progress_pct=0,
        current_step="start",
    )
    await deps.bus.progress(task_id, event)
    return FlowState(spec=task.spec)


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
        if on_end is not None:
            await on_end({**state, "outcome": outcome}, deps)
        extra = details(state) if details is not None else {}
        if outcome != "cancelled":
            outcome = await _record(deps, state, outcome, build_result, extra)
        else:
            await _record_cancelled(deps, state, build_result, extra)
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
) -> Outcome:
    """Write the final status and result; a task cancelled or failed meanwhile keeps its
    status and result (the API refuses to change them)."""
    succeeded = outcome == "completed"
    result = build_result({**state, "outcome": outcome}, succeeded)
    status = TaskStatus.COMPLETED if succeeded else TaskStatus.FAILED
    change = TaskUpdate(status=status, result={**extra, **result.model_dump(mode="json")})
    try:
        await deps.api.update_task(state["task_id"], change)
    except ApiCallError as error:
        if not error.is_conflict:
            raise
        task = await deps.api.get_task(state["task_id"])
        if task.status == TaskStatus.CANCELLED:
            await _record_cancelled(deps, state, build_result, extra)
            return "cancelled"
        if task.status == TaskStatus.FAILED:  # e.g. by the scheduler, past its deadline
            log.warning("task_failed_elsewhere", task_id=state["task_id"], outcome=outcome)
            return "failed"
        if task.status != status:
            raise
    return outcome


async def _record_cancelled(
    deps: FlowDeps, state: FlowState, build_result: ResultBuilder, extra: dict[str, Any]
) -> None:
    """Keep why a cancelled task stopped in its result (its status is already cancelled)."""
    result = build_result({**state, "outcome": "cancelled", "error": "task cancelled"}, False)
    try:
        await deps.api.update_task(
            state["task_id"], TaskUpdate(result={**extra, **result.model_dump(mode="json")})
        )
    except ApiCallError as error:
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
