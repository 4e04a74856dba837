"""Building blocks of the flows: plain steps, awaited steps (send, then interrupt), routing.

An awaited step is two nodes, so that publishing and waiting are separate checkpoints:
`<name>` publishes the request (its request_id derived from task id and step, so a replay
republishes the same id) and records the deadline; `<name>_wait` takes the answer from the
inbox or calls `interrupt()` until the runner resumes it with an answer, a timeout or a
cancellation. Every node first checks that its task was not cancelled, and turns expected
failures into the flow's outcome, so the graph routes to cleanup and the task fails with a
clear error; anything unexpected propagates and the node is retried.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import structlog
from langgraph.graph import StateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel

from services.langgraph.errors import (
    ApiCallError,
    StepFailedError,
    StepTimeoutError,
    TaskCancelledError,
)
from services.langgraph.graphs.state import FlowState, Resume, request_id_for
from services.langgraph.observe import observe_step, observe_timeout, step_entered
from services.langgraph.ports import FlowDeps
from services.langgraph.settings import StepTimeouts
from services.langgraph.store import PendingWait
from shared.contracts import ProgressEvent, TaskStatus
from shared.git import GitError
from shared.registry import RegistryError

__all__ = [
    "AwaitedStep",
    "Graph",
    "Node",
    "PlainStep",
    "add_awaited_step",
    "add_plain_step",
    "branch",
    "check_not_cancelled",
    "check_not_cancelled_unless_fresh",
    "forward_pct",
    "guarded",
    "report",
]

log = structlog.get_logger("services.langgraph.steps")

Graph = StateGraph[FlowState, FlowDeps, FlowState, FlowState]


class Node(Protocol):
    """A graph node: state in, state update out; dependencies from the runtime context."""

    async def __call__(self, state: FlowState, *, runtime: Runtime[FlowDeps]) -> FlowState:
        """Run the node."""
        ...


Build = Callable[[FlowState, FlowDeps, str], Awaitable[tuple[str, BaseModel, FlowState]]]
"""(state, deps, request_id) → (stream, request message, state update)."""
Accept = Callable[[FlowState, FlowDeps, dict[str, Any]], Awaitable[FlowState]]
"""(state, deps, answer payload) → state update; raises `StepFailedError`."""
Run = Callable[[FlowState, FlowDeps], Awaitable[FlowState]]

_FAILURES = (StepFailedError, GitError, RegistryError)
"""Expected failures of a step: they fail the task (others are retried)."""


def forward_pct(state: FlowState, pct: int) -> int:
    """`pct`, or more when the flow already reported more (a loop never moves progress back)."""
    return max(pct, state.get("progress_pct", 0))


async def report(deps: FlowDeps, state: FlowState, step: str, pct: int, message: str) -> None:
    """A `progress` event of the task for a step (never below what was reported before)."""
    pct = forward_pct(state, pct)
    step_entered(state, step)
    event = ProgressEvent(
        type="progress",
        request_id=state["request_id"],
        task_id=state["task_id"],
        message=message,
        progress_pct=pct,
        current_step=step,
    )
    await deps.bus.progress(state["task_id"], event)


async def check_not_cancelled(deps: FlowDeps, state: FlowState) -> FlowState:
    """Raise `TaskCancelledError` when the task was cancelled through the API; else the
    state update saying when its status was read (`status_read_at`)."""
    read_at = deps.clock_s()  # the status read is at least this fresh
    task = await deps.api.get_task(state["task_id"])
    if task.status == TaskStatus.CANCELLED:
        raise TaskCancelledError(f"task {state['task_id']} was cancelled")
    return FlowState(status_read_at=read_at)


async def check_not_cancelled_unless_fresh(deps: FlowDeps, state: FlowState) -> FlowState:
    """`check_not_cancelled`, unless the flow read its task's status less than
    `status_fresh_s` ago (then nothing is asked: a cancel in that window is honoured by the
    next step that asks, or by the sweeper while the flow waits)."""
    read_at = state.get("status_read_at")
    if read_at is not None and 0 <= deps.clock_s() - read_at < deps.settings.status_fresh_s:
        return FlowState()
    return await check_not_cancelled(deps, state)


def _failed(step: str, error: Exception) -> FlowState:
    if isinstance(error, TaskCancelledError):
        return FlowState(outcome="cancelled", failed_step=step, error="task cancelled")
    reason = error.reason if isinstance(error, StepFailedError) else str(error)
    kept = error.kept if isinstance(error, StepFailedError) else {}
    log.info("step_failed", step=step, error=reason)
    failed = FlowState(outcome="failed", failed_step=step, error=f"{step}: {reason}")
    return cast(FlowState, {**kept, **failed})


def _api_failure(error: ApiCallError) -> bool:
    """API refusals (4xx) fail the step; server errors and no answer are retried."""
    return error.status_code is not None and 400 <= error.status_code < 500


async def guarded(
    step: str, state: FlowState, work: Callable[[], Awaitable[FlowState]]
) -> FlowState:
    try:
        return await work()
    except (*_FAILURES, TaskCancelledError) as error:
        return _failed(step, error)
    except ApiCallError as error:
        if _api_failure(error):
            return _failed(step, StepFailedError(step, str(error)))
        raise


@dataclass(frozen=True)
class PlainStep:
    """A step that calls outside systems directly and needs no answer from a queue."""

    name: str
    pct: int
    label: str
    run: Run
    quiet_when: str | None = None
    """A state flag: while it is true the step runs again without a new progress event
    (a step polled in a loop)."""
    reads_only: bool = False
    """The step changes nothing outside the flow (it only reads): it runs without asking
    the API whether the task was cancelled; the next step that acts asks."""
    asks_cancel: bool = False
    """The step asks whether its task was cancelled itself, every time (`check_not_cancelled`,
    alongside its other reads, before it acts): `integrate`, which moves the base branch."""


@dataclass(frozen=True)
class AwaitedStep:
    """A step that publishes a request and waits for its answer (an interrupt)."""

    name: str
    pct: int
    label: str
    timeout_s: Callable[[StepTimeouts], float]
    build: Build
    accept: Accept
    tolerant: bool = False
    """A tolerant step (cleanup) records failures as warnings and never changes the outcome."""
    per_worker: bool = False
    """The step is repeated for each developer worker (`worker_round`), each time with a new
    request id, so a replacement worker is a new request and not the answer of the last."""
    counter: str | None = None
    """A step repeated in a loop (checks, fix, merge): the state field counting its runs so
    far (its `accept` adds one); each run's request id ends with `#<run>`."""
    quiet: bool = False
    """The step sends no progress event (cleanup after the task's terminal event)."""

    def request_id(self, state: FlowState) -> str:
        """The request id of this step of this flow."""
        round_ = state.get("worker_round", 1)
        step = f"{self.name}@{round_}" if self.per_worker and round_ > 1 else self.name
        if self.counter is not None:
            done = state.get(self.counter, 0)
            step = f"{step}#{int(str(done)) + 1}"
        return request_id_for(state["task_id"], step)


def plain_node(step: PlainStep) -> Node:
    """The node of a plain step."""

    async def node(state: FlowState, *, runtime: Runtime[FlowDeps]) -> FlowState:
        deps = runtime.context

        async def work() -> FlowState:
            read = FlowState()
            if not (step.reads_only or step.asks_cancel):
                read = await check_not_cancelled_unless_fresh(deps, state)
            if step.quiet_when and state.get(step.quiet_when):
                update = await step.run(state, deps)
            else:  # the event and the step's work are independent: at once
                _, update = await asyncio.gather(
                    report(deps, state, step.name, step.pct, step.label), step.run(state, deps)
                )
            return FlowState(**{**read, **update}, progress_pct=forward_pct(state, step.pct))

        started = time.monotonic()
        update = await guarded(step.name, state, work)
        observe_step(state, step.name, time.monotonic() - started, update)
        return update

    node.__name__ = step.name
    return node


def send_node(step: AwaitedStep) -> Node:
    """The node that publishes an awaited step's request."""

    async def node(state: FlowState, *, runtime: Runtime[FlowDeps]) -> FlowState:
        deps = runtime.context

        async def work() -> FlowState:
            read = FlowState()
            if not step.tolerant:
                read = await check_not_cancelled_unless_fresh(deps, state)
            request_id = step.request_id(state)
            if step.quiet:
                stream, message, update = await step.build(state, deps, request_id)
            else:  # the event and building the request are independent: at once
                _, (stream, message, update) = await asyncio.gather(
                    report(deps, state, step.name, step.pct, step.label),
                    step.build(state, deps, request_id),
                )
            await deps.bus.publish(stream, message, correlation_id=state["correlation_id"])
            timeout_s = step.timeout_s(deps.settings.timeouts)
            return FlowState(
                **{**read, **update},
                deadline_at=deps.clock_s() + timeout_s,
                step_started_at=deps.clock_s(),
                progress_pct=forward_pct(state, step.pct),
            )

        if step.tolerant:
            return await work()
        return await guarded(step.name, state, work)

    node.__name__ = step.name
    return node


def wait_node(step: AwaitedStep) -> Node:
    """The node that waits (interrupt) for an awaited step's answer and accepts it."""

    async def node(state: FlowState, *, runtime: Runtime[FlowDeps]) -> FlowState:
        deps = runtime.context
        request_id = step.request_id(state)
        answer = await deps.store.get_answer(request_id)
        if answer is None:
            wait = PendingWait(
                request_id=request_id, step=step.name, deadline_at=state["deadline_at"]
            )
            await deps.store.set_wait(state["task_id"], wait)
            resume = cast(Resume, interrupt(wait.model_dump()))
            if resume.get("kind") == "answer":
                answer = await deps.store.get_answer(request_id)
        await deps.store.clear_wait(state["task_id"])
        took_s = deps.clock_s() - state.get("step_started_at", deps.clock_s())
        if answer is not None:
            update = await _accept(step, state, deps, answer)
            observe_step(state, step.name, took_s, update)
            return update
        kind = resume.get("kind")
        if kind == "timeout":
            observe_timeout(state, step.name, took_s)
        if step.tolerant:
            note = f"{step.name}: {'cancelled' if kind == 'cancelled' else 'no answer in time'}"
            return FlowState(warnings=[*state.get("warnings", []), note])
        if kind == "cancelled":
            return _failed(step.name, TaskCancelledError("cancelled"))
        return _failed(
            step.name, StepTimeoutError(step.name, step.timeout_s(deps.settings.timeouts))
        )

    node.__name__ = f"{step.name}_wait"
    return node


async def _accept(
    step: AwaitedStep, state: FlowState, deps: FlowDeps, answer: dict[str, Any]
) -> FlowState:
    try:
        return await step.accept(state, deps, answer)
    except (*_FAILURES, ApiCallError) as error:
        if not step.tolerant:
            return _failed(step.name, error)
        return FlowState(warnings=[*state.get("warnings", []), f"{step.name}: {error}"])


def add_plain_step(graph: Graph, step: PlainStep) -> None:
    """Add a plain step's node."""
    graph.add_node(step.name, plain_node(step))


def add_awaited_step(graph: Graph, step: AwaitedStep) -> None:
    """Add an awaited step's two nodes, the send node flowing into the wait node when it
    succeeded (else into the router given later for `<name>`)."""
    graph.add_node(step.name, send_node(step))
    graph.add_node(f"{step.name}_wait", wait_node(step))


StopRoute = Callable[[FlowState], str]
"""Where a flow goes once its outcome is no longer `running` (cleanup, then finish)."""


def branch(graph: Graph, source: str, path: Callable[[FlowState], str]) -> None:
    """`graph.add_conditional_edges(source, path)` with `path` run on the event loop.

    LangGraph runs a plain (sync) router of an async graph in a thread of the default
    executor (`run_in_executor`): a thread hop, its wake-ups and a context copy for a
    dictionary lookup, at every edge of every flow. Wrapped in a coroutine function (same
    name and type hints, so the branch keeps its name and input schema), it runs inline."""

    @functools.wraps(path)
    async def on_loop(state: FlowState) -> str:
        return path(state)

    graph.add_conditional_edges(source, on_loop)


def route(graph: Graph, source: str, next_node: str, on_stop: StopRoute) -> None:
    """After `source`: on to `next_node` while the flow runs, else to `on_stop(state)`."""

    def choose(state: FlowState) -> str:
        if state.get("outcome", "running") == "running":
            return next_node
        return on_stop(state)

    choose.__name__ = f"after_{source}"
    branch(graph, source, choose)


def route_awaited(graph: Graph, step: AwaitedStep, next_node: str, on_stop: StopRoute) -> None:
    """Route an awaited step: send → wait → `next_node`, stopping where the flow stopped."""
    route(graph, step.name, f"{step.name}_wait", on_stop)
    route(graph, f"{step.name}_wait", next_node, on_stop)
