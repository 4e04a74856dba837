"""The worker-manager counts each relayed agent run's tokens and cost from the run record:
real Redis, a real wrapper process, the fake Claude CLI (11 input and 7 output tokens a
run), the process's own metrics registry read before and after."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from shared.observability.metrics import SystemMetrics
from tests.support.workers import Client, ManagerRunner


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _figures() -> dict[str, float]:
    agent = "claude-code"
    return {
        "input": _value("orchestrator_agent_tokens_total", agent=agent, kind="input"),
        "output": _value("orchestrator_agent_tokens_total", agent=agent, kind="output"),
        "cost": _value("orchestrator_agent_cost_usd_total", agent=agent),
        "success": _value("orchestrator_agent_runs_total", agent=agent, status="success"),
        "error": _value("orchestrator_agent_runs_total", agent=agent, status="error"),
    }


async def test_each_relayed_run_adds_its_tokens_and_cost_once(
    manager: ManagerRunner, client: Client
) -> None:
    """Two answered runs and a crashed one: each counted once, the answered ones with the
    tokens and cost their records carry."""
    SystemMetrics.default()
    before = _figures()
    await manager.start()
    worker_id = (await client.create()).worker_id
    first = await client.send(worker_id, "hello")
    second = await client.send(worker_id, "and more")
    crashed = await client.send(worker_id, "[crash]")
    assert first.success, first.error
    assert second.success, second.error
    assert not crashed.success
    records = [answer.run for answer in (first, second, crashed)]
    assert all(record is not None for record in records)
    after = _figures()
    delta = {key: after[key] - before[key] for key in after}
    assert delta["success"] == 2
    assert delta["error"] == 1
    assert delta["input"] == sum(r.input_tokens for r in records if r is not None)
    assert delta["output"] == sum(r.output_tokens for r in records if r is not None)
    assert delta["input"] >= 22
    assert delta["output"] >= 14
    assert delta["cost"] == pytest.approx(sum(r.cost_usd for r in records if r is not None))
    assert delta["cost"] > 0
    await client.delete(worker_id)
