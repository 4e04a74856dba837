"""The `factory-droid` adapter with the real Droid CLI, as far as it goes offline.

Droid's own models are served by Factory (api.factory.ai, `FACTORY_API_KEY`), which cannot
be reached here: that path is tested up to the connection error. A model of the user's own
(BYOK: a `customModels` entry of ~/.factory/settings.json, provider `anthropic`) talks to
its API directly, so the developer flow runs against the scripted Messages API. Resuming a
session (`--session-id`) fetches it from Factory even then: offline it fails.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from services.worker_manager.agent_env import git_identity_env
from services.worker_manager.settings import WorkerManagerSettings
from services.worker_wrapper.agents import AgentActivity, AgentRequest, FactoryDroidAgent
from tests.agents.fake_models import ModelScript, Reply, ToolCall, serve_anthropic
from tests.support.agents import PLANTED_KEY
from tests.workers.helpers import git, make_repo_with_remote

EnvFactory = Callable[..., dict[str, str]]
BYOK_MODEL = "custom:Scripted-0"
"""How droid names the first custom model, displayName `Scripted`."""


class Recorder:
    """An activity sink that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def __call__(self, activity: AgentActivity) -> None:
        self.messages.append(f"{activity.kind}:{activity.message}")


GIT_STEPS = ("add hello.py", "commit -q -m 'Add hello'", "push -q origin HEAD:main")
"""Droid-Shield (its check of commits for secrets) wants each commit or push in an Execute
call of its own, naming the repository with `git -C <absolute path>`."""


def execute(command: str) -> ToolCall:
    """Droid's shell tool (it insists on a risk level)."""
    return ToolCall(
        "Execute",
        {
            "command": command,
            "riskLevelReason": "works on the project's branch",
            "riskLevel": "medium",
        },
    )


def byok_settings(home: Path, base_url: str) -> None:
    """~/.factory/settings.json with one custom Anthropic-compatible model at `base_url`."""
    model = {
        "model": "scripted-model",
        "displayName": "Scripted",
        "baseUrl": base_url,
        "apiKey": "${ANTHROPIC_API_KEY}",
        "provider": "anthropic",
        "maxOutputTokens": 4096,
    }
    (home / ".factory").mkdir(exist_ok=True)
    (home / ".factory" / "settings.json").write_text(json.dumps({"customModels": [model]}))


async def test_droid_edits_commits_and_pushes_with_a_byok_model(
    droid_cli: Path, make_env: EnvFactory, empty_home: Path, tmp_path: Path
) -> None:
    """The real droid, on a custom model at the scripted API: writes, commits, pushes; a
    resume fails without Factory's API."""
    workspace, remote = make_repo_with_remote(tmp_path)
    script = ModelScript(
        [
            Reply(
                text="Creating the module.",
                tools=(
                    ToolCall(
                        "Create",
                        {"file_path": str(workspace / "hello.py"), "content": "print(2)\n"},
                    ),
                ),
            ),
            *(Reply(tools=(execute(f"git -C {workspace} {step}"),)) for step in GIT_STEPS),
            Reply(text="Added hello.py and pushed it."),
        ]
    )
    identity = git_identity_env(WorkerManagerSettings(), "factory-droid")
    with serve_anthropic(script) as fake:
        byok_settings(empty_home, fake.url)
        env = make_env(ANTHROPIC_API_KEY=PLANTED_KEY, FACTORY_API_KEY=PLANTED_KEY, **identity)
        agent = FactoryDroidAgent([str(droid_cli)], model=BYOK_MODEL)
        recorder = Recorder()
        result = await agent.run(AgentRequest("r1", "add hello.py", workspace, 90.0, env), recorder)
        assert result.status == "success", result.error
        again = await agent.run(
            AgentRequest("r2", "and now?", workspace, 60.0, env, result.session_id), Recorder()
        )
    assert result.response == "Added hello.py and pushed it."
    assert result.usage["input_tokens"] > 0
    assert git(remote, "show", "main:hello.py") == "print(2)"
    assert git(remote, "log", "-1", "--format=%an", "main") == "Factory Droid agent"
    assert any(m.startswith("tool:Create: ") for m in recorder.messages)
    assert not any(m.startswith("warning:") for m in recorder.messages), recorder.messages
    # resuming fetches the session from api.factory.ai, even for a BYOK model: offline
    # that is a clear error at once (the wrapper then starts a fresh session)
    assert again.status == "error"
    assert "droid exited without a completion event (exit code 1)" in (again.error or "")
    assert script.conversation_requests == 5


async def test_droid_without_factory_reachable_fails_clearly(
    droid_cli: Path, make_env: EnvFactory, tmp_path: Path
) -> None:
    """With Factory's own model and no route to Factory: a clear error, no hang, no key."""
    env = make_env(FACTORY_API_KEY=PLANTED_KEY)
    agent = FactoryDroidAgent([str(droid_cli)])
    started = time.monotonic()
    result = await agent.run(AgentRequest("r1", "go", tmp_path, 120.0, env), Recorder())
    assert result.status == "error"
    assert "Connection error" in (result.error or ""), result.error
    assert PLANTED_KEY not in (result.error or "")
    assert time.monotonic() - started < 100
