"""The `codex` adapter with the real Codex CLI against a scripted OpenAI Responses API."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from services.worker_manager.agent_env import git_identity_env
from services.worker_manager.settings import WorkerManagerSettings
from services.worker_wrapper.agents import AgentActivity, AgentRequest, CodexAgent
from tests.agents.fake_models import Failure, ModelScript, Reply, ToolCall, serve_openai
from tests.support.agents import PLANTED_KEY
from tests.workers.helpers import git, make_repo_with_remote, processes_with

EnvFactory = Callable[..., dict[str, str]]
MODEL = "scripted-model"
"""A model name Codex does not know: it then offers plain function tools (exec_command)."""


class Recorder:
    """An activity sink that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def __call__(self, activity: AgentActivity) -> None:
        self.messages.append(f"{activity.kind}:{activity.message}")


def codex_env(make_env: EnvFactory, url: str) -> dict[str, str]:
    """The agent environment: the key, the API's base URL, the agent's identity."""
    identity = git_identity_env(WorkerManagerSettings(), "codex")
    return make_env(OPENAI_BASE_URL=f"{url}/v1", OPENAI_API_KEY=PLANTED_KEY, **identity)


def shell(command: str) -> ToolCall:
    """Codex's shell tool."""
    return ToolCall("exec_command", {"cmd": command})


async def test_codex_edits_commits_and_pushes_with_an_empty_home(
    codex_cli: Path, make_env: EnvFactory, tmp_path: Path
) -> None:
    """The real Codex writes a file, commits it as the agent and pushes; usage adds up."""
    workspace, remote = make_repo_with_remote(tmp_path)
    script = ModelScript(
        [
            Reply(
                text="Adding the module.",
                tools=(shell("printf 'print(1)\\n' > hello.py && git add hello.py"),),
                input_tokens=700,
                output_tokens=40,
            ),
            Reply(
                tools=(shell("git commit -q -m 'Add hello' && git push -q origin HEAD:main"),),
                input_tokens=800,
                output_tokens=30,
            ),
            Reply(text="Added hello.py and pushed it.", input_tokens=900, output_tokens=10),
        ]
    )
    with serve_openai(script) as fake:
        agent = CodexAgent([str(codex_cli)], model=MODEL, max_retries=0)
        recorder = Recorder()
        request = AgentRequest("r1", "add hello.py", workspace, 90.0, codex_env(make_env, fake.url))
        result = await agent.run(request, recorder)
    assert result.status == "success", result.error
    assert result.response == "Added hello.py and pushed it."
    assert result.session_id
    assert result.usage["input_tokens"] == 2400
    assert result.usage["output_tokens"] == 80
    assert git(remote, "show", "main:hello.py") == "print(1)"
    assert git(remote, "log", "-1", "--format=%an <%ae>", "main") == (
        "Codex agent <codex@orchestrator.invalid>"
    )
    assert any(m.startswith("tool:shell: ") and "git push" in m for m in recorder.messages)
    assert script.paths[0] == "/v1/responses"


async def test_codex_resumes_its_session(
    codex_cli: Path, make_env: EnvFactory, tmp_path: Path
) -> None:
    """`codex exec resume <id>`: the second prompt continues the first conversation."""
    script = ModelScript([Reply(text="First answer."), Reply(text="Second answer.")])
    with serve_openai(script) as fake:
        agent = CodexAgent([str(codex_cli)], model=MODEL, max_retries=0)
        env = codex_env(make_env, fake.url)
        first = await agent.run(AgentRequest("r1", "remember 42", tmp_path, 60.0, env), Recorder())
        assert first.status == "success", first.error
        second = await agent.run(
            AgentRequest("r2", "what did I say?", tmp_path, 60.0, env, first.session_id),
            Recorder(),
        )
    assert second.status == "success", second.error
    assert second.response == "Second answer."
    assert second.session_id == first.session_id
    history = str(script.requests[-1]["input"])
    assert "remember 42" in history
    assert "First answer." in history


async def test_codex_timeout_kills_the_whole_process_tree(
    codex_cli: Path, make_env: EnvFactory, tmp_path: Path
) -> None:
    """A prompt outliving its timeout: Codex and the commands it started are all killed."""
    marker = f"codex-sleeper-{os.getpid()}-{time.monotonic_ns()}"
    script = ModelScript([Reply(tools=(shell(f"bash -c 'sleep 600; : {marker}'"),))])
    with serve_openai(script) as fake:
        agent = CodexAgent([str(codex_cli)], model=MODEL, max_retries=0, kill_grace_s=1.0)
        request = AgentRequest("r1", "sleep", tmp_path, 8.0, codex_env(make_env, fake.url))
        result = await agent.run(request, Recorder())
    assert result.status == "timeout"
    assert processes_with(marker) == []
    assert processes_with(str(codex_cli)) == []


@pytest.mark.parametrize(
    "failure",
    [Failure(status=500, message="internal trouble"), Failure(drop_stream=True)],
    ids=["http-500", "dropped-stream"],
)
async def test_codex_model_errors_are_clear_errors(
    codex_cli: Path, make_env: EnvFactory, tmp_path: Path, failure: Failure
) -> None:
    """A failing or cut-off Responses stream ends the run with a model API error, quickly."""
    script = ModelScript([failure], repeat_failures=True)
    with serve_openai(script) as fake:
        agent = CodexAgent([str(codex_cli)], model=MODEL, max_retries=0)
        request = AgentRequest("r1", "go", tmp_path, 60.0, codex_env(make_env, fake.url))
        started = time.monotonic()
        result = await agent.run(request, Recorder())
    assert result.status == "error"
    assert "the model API failed" in (result.error or ""), result.error
    assert PLANTED_KEY not in (result.error or "")
    assert time.monotonic() - started < 45
