"""The developer flow with the real Codex CLI: `orchestrator up` as root maps the contract's
developer agent (claude-code) to `codex`, the OpenAI key and base URL in its environment only,
an empty HOME; the scripted Responses API runs one shell command that adds a route, commits
and pushes; the task completes with that commit; the project deploys and its URL answers.
Caps are set (a task's, the users' monthly with a hold per task), far above what the run
costs: the task holds its share of the month, and Codex talks to the model through the
wrapper's metering relay, whose count is the recorded spend."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agents.fake_models import ModelScript, Reply, ToolCall, serve_openai
from tests.agents.system import ADD_ROUTE, agent_system, deployed, developed, run_log
from tests.support.agents import PLANTED_KEY, cli_path
from tests.support.system import UpSystem

MODEL = "scripted-model"
"""A model name Codex does not know: it then offers plain function tools (exec_command)."""


@pytest.fixture
def codex_system(tmp_path: Path, empty_home: Path) -> Iterator[tuple[UpSystem, ModelScript]]:
    """`orchestrator up` whose developer agent is the real `codex` against a scripted model."""
    codex = cli_path("codex")
    script = ModelScript(
        [
            Reply(
                text="Adding the endpoint.", tools=(ToolCall("exec_command", {"cmd": ADD_ROUTE}),)
            ),
            Reply(text="Added /hello and pushed the branch."),
        ]
    )
    settings = {
        "ORCHESTRATOR_WORKERS__AGENT_CLI": json.dumps({"claude-code": "codex"}),
        "ORCHESTRATOR_WORKERS__CODEX_COMMAND": json.dumps([str(codex)]),
        "ORCHESTRATOR_WORKERS__CODEX_MODEL": MODEL,
        "ORCHESTRATOR_WORKERS__CODEX_MAX_RETRIES": "0",
        "ORCHESTRATOR_WORKERS__TASK_BUDGET_USD": "5",
        "ORCHESTRATOR_API__MONTHLY_BUDGET_USD": "20",
        "ORCHESTRATOR_API__TASK_HOLD_USD": "5",
    }
    with serve_openai(script) as fake:
        secrets = {"OPENAI_BASE_URL": f"{fake.url}/v1", "OPENAI_API_KEY": PLANTED_KEY}
        line = f"agent  claude-code → codex ({codex})"
        with agent_system(tmp_path, empty_home, settings, secrets, line) as system:
            yield system, script


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_real_codex_develops_and_the_project_deploys(
    codex_system: tuple[UpSystem, ModelScript],
) -> None:
    """task create → the real Codex's commit on the remote → task completed → deploy → URL."""
    system, script = codex_system
    project_id, task = developed(system, "Codex agent")
    assert script.paths[0] == "/v1/responses"
    assert "add a /hello endpoint" in str(script.requests[0]["input"])
    assert task.result["agent_runs"] >= 1
    _, spec_run = run_log(system, task.id, "codex")
    # two responses of 100 input and 20 output tokens at the table's default $15/$75 per Mtok
    assert (spec_run["input_tokens"], spec_run["output_tokens"]) == (200, 40)
    assert spec_run["cost_usd"] == pytest.approx((200 * 15 + 40 * 75) / 1e6)
    deployed(system, project_id)
