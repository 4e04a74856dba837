"""What the flows tell Prometheus: step durations, the step each flow is at, and what a
flow's end says (tasks' checks, fix rounds, integrations, conflicts, deploys, rollbacks).

A flow's end is observed by its `finish` node; a crash inside `finish` may observe it twice
(the node runs again), which over-counts by one at worst."""

from __future__ import annotations

from services.langgraph.graphs.state import FlowState
from shared.observability.metrics import SystemMetrics

__all__ = ["observe_end", "observe_step", "step_entered"]


def _flow(state: FlowState) -> str:
    return state.get("flow") or "unknown"


def step_entered(state: FlowState, step: str) -> None:
    """The flow reported `step` (`orchestrator_flow_steps_in_flight`)."""
    SystemMetrics.default().steps_in_flight.enter(state["task_id"], _flow(state), step)


def observe_step(state: FlowState, step: str, seconds: float, update: FlowState | None) -> None:
    """A step took `seconds`; its outcome is the flow's outcome after it (`ok` while the
    flow runs on)."""
    outcome = (update or {}).get("outcome", "running")
    label = "ok" if outcome in ("running", "completed") else str(outcome)
    SystemMetrics.default().step_seconds.labels(_flow(state), step, label).observe(
        max(0.0, seconds)
    )


def observe_timeout(state: FlowState, step: str, seconds: float) -> None:
    """A step got no answer in time."""
    SystemMetrics.default().step_seconds.labels(_flow(state), step, "timeout").observe(
        max(0.0, seconds)
    )


def observe_end(state: FlowState, outcome: str) -> None:
    """The flow of `state` ended with `outcome`."""
    metrics = SystemMetrics.default()
    metrics.steps_in_flight.leave(state["task_id"])
    flow = _flow(state)
    metrics.flows_finished.labels(flow, outcome).inc()
    runs = state.get("checks") or []
    passed = sum(1 for run in runs if run.get("passed"))
    if passed:
        metrics.checks.labels("passed").inc(passed)
    if len(runs) - passed:
        metrics.checks.labels("failed").inc(len(runs) - passed)
    if state.get("fix_round"):
        metrics.fix_rounds.inc(int(state.get("fix_round", 0)))
    if state.get("conflict_round"):
        metrics.conflicts.inc(int(state.get("conflict_round", 0)))
    mode = state.get("integration")
    if mode and (state.get("integrated") or state.get("merged_sha") or runs):
        result = "integrated" if state.get("integrated") else outcome
        metrics.integrations.labels(mode, result).inc()
    if state.get("deploy_sha"):
        kind = "rollback" if state.get("deploy_kind") == "rollback" else "deploy"
        metrics.deploys.labels(kind, outcome).inc()
