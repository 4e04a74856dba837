"""The `claude-code` adapter with the real Claude Code CLI against a scripted Messages API.

Run as root (as this machine and most containers are): the adapter's `IS_SANDBOX=1` is what
lets the CLI accept `bypassPermissions` here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from services.worker_manager.agent_env import git_identity_env
from services.worker_manager.settings import WorkerManagerSettings
from services.worker_wrapper.agents import AgentRequest, ClaudeCodeAgent
from tests.agents.fake_models import Failure, ModelScript, Reply, ToolCall, serve_anthropic
from tests.support.agents import PLANTED_KEY
from tests.workers.helpers import git, make_repo_with_remote, processes_with

EnvFactory = Callable[..., dict[str, str]]


class Recorder:
    """An activity sink that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def __call__(self, activity: object) -> None:
        self.messages.append(f"{getattr(activity, 'kind', '')}:{getattr(activity, 'message', '')}")


def claude_env(make_env: EnvFactory, url: str, **extra: str) -> dict[str, str]:
    """The agent environment of a worker: the key, the gateway URL, the agent's identity."""
    identity = git_identity_env(WorkerManagerSettings(), "claude-code")
    return make_env(ANTHROPIC_BASE_URL=url, ANTHROPIC_API_KEY=PLANTED_KEY, **identity, **extra)


def developer_script(workspace: Path) -> ModelScript:
    """Write a file, commit and push it, answer."""
    return ModelScript(
        [
            Reply(
                text="I will add the module.",
                tools=(
                    ToolCall(
                        "Write",
                        {"file_path": str(workspace / "hello.py"), "content": "print('hi')\n"},
                    ),
                ),
                input_tokens=1000,
                output_tokens=50,
            ),
            Reply(
                tools=(
                    ToolCall(
                        "Bash",
                        {
                            "command": "git add hello.py && git commit -q -m 'Add hello' "
                            "&& git push -q origin HEAD:main",
                            "description": "commit and push",
                        },
                    ),
                ),
                input_tokens=1200,
                output_tokens=30,
            ),
            Reply(text="Added hello.py and pushed it.", input_tokens=1300, output_tokens=20),
        ]
    )


async def test_claude_edits_commits_and_pushes_with_an_empty_home(
    claude_cli: Path, make_env: EnvFactory, tmp_path: Path
) -> None:
    """As root, with no ~/.gitconfig: the real CLI writes, commits as the agent, pushes."""
    workspace, remote = make_repo_with_remote(tmp_path)
    script = developer_script(workspace)
    with serve_anthropic(script) as fake:
        agent = ClaudeCodeAgent([str(claude_cli)], max_retries=1)
        recorder = Recorder()
        request = AgentRequest(
            "r1", "add hello.py", workspace, 90.0, claude_env(make_env, fake.url)
        )
        result = await agent.run(request, recorder)
    assert result.status == "success", result.error
    assert result.response == "Added hello.py and pushed it."
    assert result.session_id
    assert result.usage["input_tokens"] == 3500
    assert result.usage["output_tokens"] == 100
    assert result.cost_usd is not None
    assert result.cost_usd > 0
    assert git(remote, "show", "main:hello.py") == "print('hi')"
    author = git(remote, "log", "-1", "--format=%an <%ae>|%cn", "main")
    assert author == "Claude Code agent <claude-code@orchestrator.invalid>|Claude Code agent"
    assert any(m.startswith("tool:Write: ") and "hello.py" in m for m in recorder.messages)
    assert any(m.startswith("tool:Bash: git add hello.py") for m in recorder.messages)
    assert script.conversation_requests == 3


async def test_claude_resumes_its_session(
    claude_cli: Path, make_env: EnvFactory, tmp_path: Path
) -> None:
    """A second prompt with the first run's session id continues that conversation."""
    script = ModelScript([Reply(text="First answer."), Reply(text="Second answer.")])
    with serve_anthropic(script) as fake:
        agent = ClaudeCodeAgent([str(claude_cli)], max_retries=1)
        env = claude_env(make_env, fake.url)
        first = await agent.run(AgentRequest("r1", "remember 42", tmp_path, 60.0, env), Recorder())
        assert first.status == "success", first.error
        second = await agent.run(
            AgentRequest("r2", "what did I say?", tmp_path, 60.0, env, first.session_id),
            Recorder(),
        )
    assert second.status == "success", second.error
    assert second.response == "Second answer."
    assert second.session_id == first.session_id
    history = str(script.requests[-1]["messages"])
    assert "remember 42" in history
    assert "First answer." in history
    assert "--resume" in agent.argv(first.session_id)


async def test_claude_timeout_kills_the_whole_process_tree(
    claude_cli: Path, make_env: EnvFactory, tmp_path: Path
) -> None:
    """A prompt that outlives its timeout: the CLI and the commands it started are killed."""
    marker = f"agent-sleeper-{os.getpid()}-{time.monotonic_ns()}"
    command = f"bash -c 'sleep 600; : {marker}' & bash -c 'sleep 601; : {marker}'"
    script = ModelScript([Reply(tools=(ToolCall("Bash", {"command": command}),))])
    with serve_anthropic(script) as fake:
        agent = ClaudeCodeAgent([str(claude_cli)], max_retries=1, kill_grace_s=1.0)
        request = AgentRequest("r1", "sleep", tmp_path, 8.0, claude_env(make_env, fake.url))
        started = time.monotonic()
        result = await agent.run(request, Recorder())
    assert result.status == "timeout"
    assert "process group was killed" in (result.error or "")
    assert time.monotonic() - started < 30
    assert processes_with(marker) == []
    assert processes_with(str(claude_cli)) == []


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (Failure(status=500, message="internal trouble"), "(HTTP 500)"),
        (Failure(status=529, message="overloaded now"), "(HTTP 529)"),
        (Failure(drop_stream=True), "the model API failed"),
    ],
    ids=["http-500", "http-529-overloaded", "dropped-stream"],
)
async def test_claude_model_errors_are_clear_errors(
    claude_cli: Path, make_env: EnvFactory, tmp_path: Path, failure: Failure, expected: str
) -> None:
    """HTTP 500, 529 and a stream cut mid-way end the run with an error saying so, quickly."""
    script = ModelScript([failure], repeat_failures=True)
    with serve_anthropic(script) as fake:
        agent = ClaudeCodeAgent([str(claude_cli)], max_retries=1)
        request = AgentRequest("r1", "go", tmp_path, 60.0, claude_env(make_env, fake.url))
        started = time.monotonic()
        result = await agent.run(request, Recorder())
    assert result.status == "error"
    assert expected in (result.error or ""), result.error
    assert time.monotonic() - started < 45


async def test_claude_api_key_never_leaves_the_agent_environment(
    claude_cli: Path, make_env: EnvFactory, tmp_path: Path
) -> None:
    """A model error echoing the key: the error, the answer and the activity show `***`."""
    script = ModelScript(
        [Failure(status=500, message=f"bad credential {PLANTED_KEY}")], repeat_failures=True
    )
    with serve_anthropic(script) as fake:
        agent = ClaudeCodeAgent([str(claude_cli)], max_retries=1)
        recorder = Recorder()
        env = claude_env(make_env, fake.url)
        result = await agent.run(AgentRequest("r1", "go", tmp_path, 60.0, env), recorder)
    assert result.status == "error"
    assert "bad credential ***" in (result.error or "")
    everything = " ".join([result.error or "", result.response or "", *recorder.messages])
    assert PLANTED_KEY not in everything
    assert PLANTED_KEY not in " ".join(agent.argv("some-session"))
    assert script.requests, "the CLI reached the scripted API"
