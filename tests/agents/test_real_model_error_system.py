"""A failing model through the whole system: `orchestrator up` with the real Claude Code CLI
against a scripted Anthropic API that answers HTTP 500 (or 529, overloaded) on every call; the
engineering task fails with an error naming the model API's failure, well within the test's
time (no hang)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agents.conftest import PLANTED_KEY, cli_path
from tests.agents.fake_models import Failure, ModelScript, serve_anthropic
from tests.agents.system import agent_system
from tests.test_quickstart import System


@pytest.fixture(params=[500, 529], ids=["http-500", "http-529-overloaded"])
def failing_model_system(
    request: pytest.FixtureRequest, tmp_path: Path, empty_home: Path
) -> Iterator[tuple[System, ModelScript]]:
    """`orchestrator up` whose real `claude` meets a model that fails every request with
    the parameter's HTTP status."""
    claude = cli_path("claude")
    script = ModelScript([Failure(status=request.param, message="trouble")], repeat_failures=True)
    settings = {
        "ORCHESTRATOR_WORKERS__CLAUDE_COMMAND": json.dumps([str(claude)]),
        "ORCHESTRATOR_WORKERS__CLAUDE_MAX_RETRIES": "0",
    }
    with serve_anthropic(script) as fake:
        secrets = {"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": PLANTED_KEY}
        line = f"agent  claude-code → claude-code ({claude})"
        with agent_system(tmp_path, empty_home, settings, secrets, line) as system:
            yield system, script


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_failing_model_fails_the_task_with_a_clear_error(
    failing_model_system: tuple[System, ModelScript],
) -> None:
    """task create → every model call answers 500 (or 529) → the task is failed, its error
    says the model API failed with that status, and no secret is in it."""
    system, script = failing_model_system
    created = system.cli("project", "create", "shop", "--json")
    assert created.returncode == 0, created.stderr
    project_id = json.loads(created.stdout)["id"]
    task = system.cli("task", "create", project_id, "--spec", "add a /hello endpoint", "--json")
    assert task.returncode == 0, task.stderr
    task_id = json.loads(task.stdout)["id"]
    started = time.monotonic()
    watched = system.cli("task", "watch", task_id, "--timeout-s", "180", timeout_s=210)
    waited = time.monotonic() - started
    shown = json.loads(system.cli("task", "show", task_id, "--json").stdout)
    assert shown["status"] == "failed", json.dumps(shown)[-2000:]
    assert watched.returncode != 0
    text = json.dumps(shown)
    assert "the model API failed" in text, text[-2000:]
    failure = script.turns[0]
    assert isinstance(failure, Failure)
    status = failure.status
    assert f"HTTP {status}" in text, text[-2000:]
    assert PLANTED_KEY not in text + watched.stdout + watched.stderr
    assert script.conversation_requests >= 1
    assert waited < 170, f"the task took {waited:.0f} s to fail"
