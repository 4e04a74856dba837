"""A failing model through the whole system: `orchestrator up` with the real Claude Code CLI
against a scripted Anthropic API that answers HTTP 500 (or 529, overloaded) on every call,
drops the stream mid-way, or hangs mid-stream past the agent's step timeout. The engineering
task fails with an error naming what went wrong, well within the test's time (no hang), and
no agent process is left behind."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.agents.fake_models import Failure, ModelScript, serve_anthropic, serve_openai
from tests.agents.system import agent_system
from tests.support.agents import PLANTED_KEY, cli_path
from tests.support.system import UpSystem
from tests.support.waiting import eventually

AGENT_TIMEOUT_S = 20
"""The agent's step timeout of the hanging case (`ORCHESTRATOR_LANGGRAPH__TIMEOUTS__AGENT_S`)."""


@dataclass(frozen=True)
class Case:
    """How the model fails, and what the task's error must say."""

    failure: Failure
    says: tuple[str, ...]
    settings: tuple[tuple[str, str], ...] = ()


CASES = {
    "http-500": Case(Failure(status=500, message="trouble"), ("the model API failed", "HTTP 500")),
    "http-529-overloaded": Case(
        Failure(status=529, message="trouble"), ("the model API failed", "HTTP 529")
    ),
    "dropped-stream": Case(Failure(drop_stream=True), ("the model API failed",)),
    "hangs-past-the-step-timeout": Case(
        Failure(hang_s=600),
        (f"agent timed out after {AGENT_TIMEOUT_S} s; its process group was killed",),
        (("ORCHESTRATOR_LANGGRAPH__TIMEOUTS__AGENT_S", str(AGENT_TIMEOUT_S)),),
    ),
}


@pytest.fixture(params=list(CASES))
def failing_model_system(
    request: pytest.FixtureRequest, tmp_path: Path, empty_home: Path
) -> Iterator[tuple[UpSystem, ModelScript, Case]]:
    """`orchestrator up` whose real `claude` meets a model that fails every request the way
    the parameter's case says."""
    case = CASES[request.param]
    claude = cli_path("claude")
    script = ModelScript([case.failure], repeat_failures=True)
    settings = {
        "ORCHESTRATOR_WORKERS__CLAUDE_COMMAND": json.dumps([str(claude)]),
        "ORCHESTRATOR_WORKERS__CLAUDE_MAX_RETRIES": "0",
        **dict(case.settings),
    }
    with serve_anthropic(script) as fake:
        secrets = {"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": PLANTED_KEY}
        line = f"agent  claude-code → claude-code ({claude})"
        with agent_system(tmp_path, empty_home, settings, secrets, line) as system:
            yield system, script, case


def agent_processes(root: Path, cli: str = "claude") -> list[psutil.Process]:
    """Live `cli` processes (and their children) working under `root`, the system's data
    directory (the worker's workspace is their working directory)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status", "cwd"]):
        try:
            cwd = proc.info["cwd"] or ""
            cmdline = " ".join(proc.info["cmdline"] or [])
            alive = proc.info["status"] != psutil.STATUS_ZOMBIE
            if alive and cwd.startswith(str(root)) and cli in cmdline:
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_failing_model_fails_the_task_with_a_clear_error(
    failing_model_system: tuple[UpSystem, ModelScript, Case],
) -> None:
    """task create → every model call fails (500, 529, a dropped stream, a stream that
    hangs past the agent's timeout) → the task is failed, its error says why, no secret is
    in it, and no `claude` process is left."""
    system, script, case = failing_model_system
    created = system.cli("project", "create", "shop", "--json")
    assert created.returncode == 0, created.stderr
    project_id = json.loads(created.stdout)["id"]
    task = system.cli("task", "create", project_id, "--spec", "add a /hello endpoint", "--json")
    assert task.returncode == 0, task.stderr
    task_id = json.loads(task.stdout)["id"]
    if case.failure.hang_s:
        # the CLI is up and waiting on the model: there is a process tree to kill
        def waiting() -> bool:
            return script.conversation_requests >= 1 and bool(agent_processes(system.data_dir))

        asyncio.run(
            eventually(
                waiting,
                timeout_s=120,
                what="the real claude waiting on the hanging model",
            )
        )
    started = time.monotonic()
    watched = system.cli("task", "watch", task_id, "--timeout-s", "180", timeout_s=210)
    waited = time.monotonic() - started
    shown = json.loads(system.cli("task", "show", task_id, "--json").stdout)
    assert shown["status"] == "failed", json.dumps(shown)[-2000:]
    assert watched.returncode != 0
    text = json.dumps(shown)
    for expected in case.says:
        assert expected in text, text[-2000:]
    assert PLANTED_KEY not in text + watched.stdout + watched.stderr
    assert script.conversation_requests >= 1
    assert waited < 170, f"the task took {waited:.0f} s to fail"
    assert agent_processes(system.data_dir) == []


CODEX_CASES = {
    "http-500": Failure(status=500, message="trouble"),
    "dropped-stream": Failure(drop_stream=True),
}


@pytest.fixture(params=list(CODEX_CASES))
def failing_codex_system(
    request: pytest.FixtureRequest, tmp_path: Path, empty_home: Path
) -> Iterator[tuple[UpSystem, ModelScript]]:
    """`orchestrator up` whose developer agent is the real `codex` (mapped from
    claude-code), its Responses API failing every request as the parameter says."""
    codex = cli_path("codex")
    script = ModelScript([CODEX_CASES[request.param]], repeat_failures=True)
    settings = {
        "ORCHESTRATOR_WORKERS__AGENT_CLI": json.dumps({"claude-code": "codex"}),
        "ORCHESTRATOR_WORKERS__CODEX_COMMAND": json.dumps([str(codex)]),
        "ORCHESTRATOR_WORKERS__CODEX_MODEL": "scripted-model",
        "ORCHESTRATOR_WORKERS__CODEX_MAX_RETRIES": "0",
    }
    with serve_openai(script) as fake:
        secrets = {"OPENAI_BASE_URL": f"{fake.url}/v1", "OPENAI_API_KEY": PLANTED_KEY}
        line = f"agent  claude-code → codex ({codex})"
        with agent_system(tmp_path, empty_home, settings, secrets, line) as system:
            yield system, script


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_failing_model_fails_the_codex_task_with_a_clear_error(
    failing_codex_system: tuple[UpSystem, ModelScript],
) -> None:
    """The same with Codex: HTTP 500 or a dropped stream on every request → the task is
    failed with "the model API failed", no secret in it, no `codex` process left."""
    system, script = failing_codex_system
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
    assert PLANTED_KEY not in text + watched.stdout + watched.stderr
    assert script.conversation_requests >= 1
    assert waited < 170, f"the task took {waited:.0f} s to fail"
    assert agent_processes(system.data_dir, "codex") == []
