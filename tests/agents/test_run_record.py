"""The run record of real CLI runs against the scripted models: what the agent answered,
each tool call with its outcome, the tokens the fake reported and their cost by the price
table; and the task cap with Codex, metered per model response by the wrapper's relay."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from services.worker_wrapper.agents import AgentRequest, ClaudeCodeAgent, CodexAgent
from services.worker_wrapper.agents.base import ignore_activity
from services.worker_wrapper.agents.pricing import Price, PriceTable
from services.worker_wrapper.service import run_record
from tests.agents.fake_models import ModelScript, Reply, ToolCall, serve_anthropic, serve_openai
from tests.agents.test_codex_cli import MODEL, codex_env, shell
from tests.support.agents import PLANTED_KEY

EnvFactory = Callable[..., dict[str, str]]
PRICES = PriceTable(
    {"claude-": Price(input=10.0, output=50.0), MODEL: Price(input=2.0, output=8.0)},
    Price(input=99.0, output=99.0),
)


async def test_the_record_of_a_real_claude_run(
    claude_cli: Path, make_env: EnvFactory, tmp_path: Path
) -> None:
    """Write (ok), a failing Bash (error with its output), then a two-line answer: the
    record holds all of it, the tokens the fake reported (3 turns x 100 in / 20 out), their
    cost by the price table, the CLI's version, and not the planted key."""
    script = ModelScript(
        [
            Reply(
                text="Writing the file.",
                tools=(ToolCall("Write", {"file_path": str(tmp_path / "a.txt"), "content": "x"}),),
            ),
            Reply(tools=(ToolCall("Bash", {"command": f"echo {PLANTED_KEY} >&2; exit 3"}),)),
            Reply(text="All done.\nThe file a.txt exists."),
        ]
    )
    with serve_anthropic(script) as fake:
        agent = ClaudeCodeAgent([str(claude_cli)], max_retries=1, prices=PRICES)
        env = make_env(ANTHROPIC_BASE_URL=fake.url, ANTHROPIC_API_KEY=PLANTED_KEY)
        result = await agent.run(
            AgentRequest("r1", "write a.txt", tmp_path, 90.0, env), ignore_activity
        )
        record = run_record(agent, "write a.txt", result, 1234, env)
    assert result.status == "success", result.error
    assert record.answer == "All done.\nThe file a.txt exists."
    assert [(t.name, t.target, t.outcome.split(":")[0]) for t in record.tools] == [
        ("Write", str(tmp_path / "a.txt"), "ok"),
        ("Bash", f"echo {'***'} >&2; exit 3", "error"),
    ]
    assert "3" in record.tools[1].outcome
    assert (record.input_tokens, record.output_tokens) == (300, 60)
    assert record.cost_usd == pytest.approx((300 * 10 + 60 * 50) / 1e6)
    assert record.prompt_chars == len("write a.txt")
    assert record.agent == "claude-code"
    assert "Claude Code" in (record.agent_version or "")
    assert (record.model or "").startswith("claude-")
    assert (record.exit_code, record.status, record.duration_ms) == (0, "success", 1234)
    assert PLANTED_KEY not in record.model_dump_json()


async def test_codex_stops_at_the_task_cap_and_starts_nothing_past_it(
    codex_cli: Path, make_env: EnvFactory, tmp_path: Path
) -> None:
    """Two model responses of 150 000 input tokens at $2/Mtok ($0.60) against a $0.50 cap
    fail the run with the budget error and the spend the fake reported (the relay sees the
    second response's usage before Codex ends its turn); the next prompt of the same worker
    is refused before the CLI starts (no request reaches the fake)."""
    script = ModelScript(
        [
            Reply(tools=(shell("true"),), input_tokens=150_000, output_tokens=0),
            Reply(text="Done.", input_tokens=150_000, output_tokens=0),
            Reply(text="never reached"),
        ]
    )
    with serve_openai(script) as fake:
        agent = CodexAgent([str(codex_cli)], model=MODEL, max_retries=0, budget_usd=0.5)
        agent.prices = PRICES
        env = codex_env(make_env, fake.url)
        first = await agent.run(AgentRequest("r1", "go", tmp_path, 90.0, env), ignore_activity)
        requests_after_first = script.conversation_requests
        second = await agent.run(AgentRequest("r2", "more", tmp_path, 90.0, env), ignore_activity)
        record = run_record(agent, "go", first, 10, env)
    assert first.status == "error"
    assert (first.error or "").startswith("budget exceeded: task 0.6000/0.5000 USD")
    assert first.cost_usd == pytest.approx(0.6)
    assert record.cost_usd == pytest.approx(0.6)
    assert record.input_tokens == 300_000
    assert [t.name for t in record.tools] == ["shell"]
    assert second.status == "error"
    assert second.error == ("budget exceeded: task 0.6000/0.5000 USD; the agent was not started")
    assert script.conversation_requests == requests_after_first
    assert PLANTED_KEY not in json.dumps(record.model_dump())
