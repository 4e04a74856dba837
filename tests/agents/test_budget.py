"""The per-task budget cap with the real Claude Code CLI: its streamed usage is priced as it
arrives, and the run is stopped within one model turn of crossing the cap."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from services.worker_wrapper.agents import AgentRequest, ClaudeCodeAgent
from services.worker_wrapper.agents.base import ignore_activity
from services.worker_wrapper.agents.pricing import Budget, Price, PriceTable
from tests.agents.fake_models import ModelScript, Reply, ToolCall, serve_anthropic, serve_openai
from tests.support.agents import PLANTED_KEY
from tests.workers.helpers import processes_with

EnvFactory = Callable[..., dict[str, str]]
PRICES = PriceTable({"claude-": Price(input=10.0, output=50.0)}, Price(input=99.0, output=99.0))
"""$10 per million input tokens, $50 per million output tokens for every Claude model."""


def test_price_table_prices_by_longest_prefix_and_counts_caches() -> None:
    """Anthropic usage (caches apart) and OpenAI usage (cached inside input) are both priced."""
    table = PriceTable(
        {"claude-": Price(10, 50, cache_read=1, cache_write=12), "claude-haiku": Price(1, 5)},
        Price(100, 100),
    )
    anthropic = {
        "input_tokens": 1000,
        "output_tokens": 100,
        "cache_read_input_tokens": 2000,
        "cache_creation_input_tokens": 500,
    }
    assert table.cost("claude-opus-x", anthropic) == pytest.approx(
        (1000 * 10 + 100 * 50 + 2000 * 1 + 500 * 12) / 1e6
    )
    assert table.cost("claude-haiku-9", {"input_tokens": 1_000_000}) == pytest.approx(1.0)
    openai = {"input_tokens": 1000, "cached_input_tokens": 400, "output_tokens": 10}
    assert table.cost("unknown", openai) == pytest.approx((600 * 100 + 10 * 100) / 1e6)
    assert PriceTable.load().price("claude-sonnet-5").input == 3.0
    assert Budget(1.0, spent_usd=0.4).exceeded(0.5) is None
    assert Budget(1.0, spent_usd=0.4).exceeded(0.6) == "task 1.0000/1.0000 USD"


async def test_a_run_crossing_the_task_cap_is_stopped_within_one_turn(
    claude_cli: Path, make_env: EnvFactory, tmp_path: Path
) -> None:
    """Turns of 20 000 input tokens at $10/Mtok ($0.20 each) against a $0.50 cap: the third
    turn crosses it; its tool never finishes, no fourth request is made, nothing is left
    running, and the spend matches the usage the scripted model reported."""
    marker = f"budget-sleeper-{os.getpid()}-{time.monotonic_ns()}"
    turn = Reply(
        tools=(ToolCall("Bash", {"command": f"sleep 3; : {marker}"}),),
        input_tokens=20_000,
        output_tokens=0,
    )
    script = ModelScript([turn, turn, turn, turn, Reply(text="never reached")])
    with serve_anthropic(script) as fake:
        agent = ClaudeCodeAgent([str(claude_cli)], max_retries=1, budget_usd=0.5, prices=PRICES)
        env = make_env(ANTHROPIC_BASE_URL=fake.url, ANTHROPIC_API_KEY=PLANTED_KEY)
        started = time.monotonic()
        result = await agent.run(AgentRequest("r1", "go", tmp_path, 90.0, env), ignore_activity)
    assert result.status == "error"
    assert (result.error or "").startswith("budget exceeded: task 0.600")
    assert (result.error or "").endswith("/0.5000 USD; the agent's process tree was stopped")
    assert script.conversation_requests == 3
    assert time.monotonic() - started < 20  # the four sleeps would take 12 s and more
    assert processes_with(marker) == []
    # mid-stream, a turn's output count is message_start's (1 token): 3 x (20 000 in, 1 out)
    assert agent.spent_usd == pytest.approx(3 * 20_000 * 10 / 1e6 + 3 * 1 * 50 / 1e6)
    assert result.cost_usd == pytest.approx(agent.spent_usd)


async def test_the_cap_counts_the_workers_earlier_runs(
    claude_cli: Path, make_env: EnvFactory, tmp_path: Path
) -> None:
    """A first run under the cap succeeds; the next one starts over the cap's remainder and
    is stopped at its first turn."""
    cheap = Reply(text="Done.", input_tokens=30_000, output_tokens=0)
    script = ModelScript([cheap, cheap, cheap])
    with serve_anthropic(script) as fake:
        agent = ClaudeCodeAgent([str(claude_cli)], max_retries=1, budget_usd=0.5, prices=PRICES)
        env = make_env(ANTHROPIC_BASE_URL=fake.url, ANTHROPIC_API_KEY=PLANTED_KEY)
        first = await agent.run(AgentRequest("r1", "one", tmp_path, 60.0, env), ignore_activity)
        assert first.status == "success", first.error
        assert agent.spent_usd == pytest.approx(0.3)  # the final usage: 30 000 in, 0 out
        second = await agent.run(AgentRequest("r2", "two", tmp_path, 60.0, env), ignore_activity)
    assert second.status == "error"
    assert (second.error or "").startswith("budget exceeded: task 0.60")
    assert "/0.5000 USD" in (second.error or "")


def test_the_managers_cap_reaches_the_workers_claude_adapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORCHESTRATOR_WORKERS__TASK_BUDGET_USD → the wrapper's settings → the adapter's cap."""
    from services.worker_manager.adapters import adapter_env
    from services.worker_manager.settings import WorkerManagerSettings
    from services.worker_wrapper.agents import build_agent
    from services.worker_wrapper.settings import WrapperSettings

    manager = WorkerManagerSettings(task_budget_usd=2.5)
    for name, value in adapter_env(manager, "claude-code").items():
        monkeypatch.setenv(name, value)
    wrapper = WrapperSettings(
        id="w", redis_url="redis://x", registry_key="k", workspace=tmp_path, session_dir=tmp_path
    )
    agent = build_agent(wrapper)
    assert isinstance(agent, ClaudeCodeAgent)
    assert agent.budget_usd == 2.5
    assert "WORKER_TASK_BUDGET_USD" not in adapter_env(WorkerManagerSettings(), "claude-code")


async def test_codex_is_stopped_within_one_model_request_of_the_cap(
    codex_cli: Path, make_env: EnvFactory, tmp_path: Path
) -> None:
    """Codex reports usage only at its turn's end; under a cap it talks to the scripted API
    through the wrapper's metering relay. Requests of 150 000 input tokens at $2/Mtok
    ($0.30 each) against a $0.50 cap: the second response crosses it, its tool call never
    runs, no third request is made, nothing is left running, and the spend is what the
    fake reported for the two responses."""
    from services.worker_wrapper.agents import CodexAgent
    from tests.agents.test_codex_cli import MODEL, codex_env, shell

    marker = f"codex-budget-sleeper-{os.getpid()}-{time.monotonic_ns()}"
    turn = Reply(tools=(shell(f"sleep 3; : {marker}"),), input_tokens=150_000, output_tokens=0)
    script = ModelScript([turn, turn, turn, turn, Reply(text="never reached")])
    prices = PriceTable({MODEL: Price(input=2.0, output=8.0)}, Price(input=99.0, output=99.0))
    with serve_openai(script) as fake:
        agent = CodexAgent(
            [str(codex_cli)], model=MODEL, max_retries=0, budget_usd=0.5, prices=prices
        )
        env = codex_env(make_env, fake.url)
        result = await agent.run(AgentRequest("r1", "go", tmp_path, 90.0, env), ignore_activity)
    assert result.status == "error"
    assert result.error == (
        "budget exceeded: task 0.6000/0.5000 USD; the agent's process tree was stopped"
    )
    assert script.conversation_requests == 2
    assert processes_with(marker) == []
    assert result.cost_usd == pytest.approx(0.6)
    assert agent.spent_usd == pytest.approx(0.6)
    assert result.usage["input_tokens"] == 300_000
    assert PLANTED_KEY not in (result.error or "")
    conversation = [r for r in script.requests if r.get("tools")]
    assert all(PLANTED_KEY not in json.dumps(r) for r in conversation)


async def test_codex_without_a_cap_talks_to_its_api_directly(tmp_path: Path) -> None:
    """No cap, no relay: the provider's base URL is the configured one."""
    from services.worker_wrapper.agents import CodexAgent

    agent = CodexAgent(["codex"], base_url="http://127.0.0.1:9/v1")
    assert 'base_url = "http://127.0.0.1:9/v1"' in " ".join(agent.argv(None, {}))
    capped = CodexAgent(["codex"], base_url="ftp://x/v1", budget_usd=1.0)
    result = await capped.run(AgentRequest("r", "go", tmp_path, 5.0, {}), ignore_activity)
    assert result.status == "error"
    assert result.error == "the model API's base URL is not http(s): 'ftp://x/v1'"
