"""The quick start with the real Claude Code CLI as the developer: `orchestrator up` as root,
the key and the gateway URL in its environment only, an empty HOME; the scripted model adds a
route, commits and pushes; the task completes with that commit; the project deploys and its
URL answers. (The deploy serves the default branch: the route itself goes live once the
engineering flow integrates the task's branch, which this test does not assume.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agents.fake_models import ModelScript, Reply, ToolCall, serve_anthropic
from tests.agents.system import ADD_ROUTE, agent_system, deployed, developed, run_log
from tests.support.agents import PLANTED_KEY, cli_path
from tests.support.system import UpSystem


@pytest.fixture
def claude_system(tmp_path: Path, empty_home: Path) -> Iterator[tuple[UpSystem, ModelScript]]:
    """`orchestrator up` whose workers run the real `claude` against a scripted model."""
    claude = cli_path("claude")
    script = ModelScript(
        [
            Reply(text="Adding the endpoint.", tools=(ToolCall("Bash", {"command": ADD_ROUTE}),)),
            Reply(text="Added /hello and pushed the branch."),
        ]
    )
    settings = {
        "ORCHESTRATOR_WORKERS__CLAUDE_COMMAND": json.dumps([str(claude)]),
        "ORCHESTRATOR_WORKERS__CLAUDE_MAX_RETRIES": "1",
    }
    with serve_anthropic(script) as fake:
        secrets = {"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": PLANTED_KEY}
        line = f"agent  claude-code → claude-code ({claude})"
        with agent_system(tmp_path, empty_home, settings, secrets, line) as system:
            yield system, script


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_real_claude_develops_and_the_project_deploys(
    claude_system: tuple[UpSystem, ModelScript],
) -> None:
    """task create → the real CLI's commit on the remote → task completed → deploy → URL."""
    system, script = claude_system
    project_id, task = developed(system, "Claude Code agent")
    assert "add a /hello endpoint" in str(script.requests[0]["messages"])
    assert task.result["agent_runs"] >= 1
    assert task.result["agent_cost_usd"] > 0
    log, spec_run = run_log(system, task.id, "claude-code")
    assert "- Bash python3 - <<'PY'" in log
    assert "total: " in log
    assert spec_run["input_tokens"] >= 200  # two scripted turns of 100 input tokens
    deployed(system, project_id)
