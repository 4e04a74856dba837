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

import pytest

from services.worker_manager.agent_env import git_identity_env
from services.worker_manager.settings import WorkerManagerSettings
from services.worker_wrapper.agents import AgentActivity, AgentRequest, FactoryDroidAgent
from tests.agents.fake_models import Failure, ModelScript, Reply, ToolCall, serve_anthropic
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


def test_the_byok_setting_travels_to_the_wrapper_and_rejects_bad_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`ORCHESTRATOR_WORKERS__DROID_BYOK` (JSON) reaches the wrapper's settings as the same
    model; a base URL that is not http(s) and a key pasted where its variable's name goes
    are refused, the latter without echoing it."""
    from services.settings import SystemSettings
    from services.worker_manager.adapters import adapter_env
    from services.worker_wrapper.settings import WrapperSettings
    from shared.droid_byok import DroidByok

    given = {"base_url": "https://models.example/", "model": "m1", "api_key_env": "TEAM_KEY"}
    monkeypatch.setenv("ORCHESTRATOR_WORKERS__DROID_BYOK", json.dumps(given))
    settings = WorkerManagerSettings.of(SystemSettings())
    assert settings.droid_byok == DroidByok.model_validate(given)
    env = adapter_env(settings, "factory-droid")
    for name, value in {**env, "WORKER_ID": "w", "WORKER_REGISTRY_KEY": "k"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WORKER_WORKSPACE", "/tmp")
    monkeypatch.setenv("WORKER_SESSION_DIR", "/tmp")
    monkeypatch.setenv("WORKER_REDIS_URL", "redis://127.0.0.1:6379/0")
    wrapper = WrapperSettings()
    assert wrapper.droid_byok == settings.droid_byok
    assert wrapper.droid_byok is not None
    assert wrapper.droid_byok.key_variable == "TEAM_KEY"
    with pytest.raises(ValueError, match="must be an http"):
        DroidByok(base_url="file:///etc/passwd", model="m")
    with pytest.raises(ValueError, match="must name an environment variable") as caught:
        DroidByok(base_url="http://x", model="m", api_key_env="sk-ant-123/abc")
    assert "sk-ant-123/abc" not in str(caught.value)
    assert DroidByok(base_url="http://x", model="m", provider="openai").key_variable == (
        "OPENAI_API_KEY"
    )


def test_byok_settings_keep_the_users_own_and_replace_a_namesake() -> None:
    """The system's model goes last; an entry of the user's with its display name is
    replaced; everything else in the user's settings is kept; the key is a reference."""
    from services.worker_wrapper.agents.factory_droid import byok_settings
    from shared.droid_byok import DroidByok

    byok = DroidByok(base_url="http://127.0.0.1:1", model="m", display_name="Sys")
    users = {
        "customModels": [{"displayName": "A"}, {"displayName": "Sys", "model": "old"}],
        "autonomy": "x",
    }
    settings, model = byok_settings(byok, "http://relay", users)
    assert model == "custom:Sys-1"
    assert settings["autonomy"] == "x"
    assert settings["customModels"][0] == {"displayName": "A"}
    assert settings["customModels"][1]["baseUrl"] == "http://relay"
    assert settings["customModels"][1]["apiKey"] == "${ANTHROPIC_API_KEY}"
    assert users["customModels"][1] == {"displayName": "Sys", "model": "old"}  # not mutated
    assert byok_settings(byok, "http://relay", {})[1] == "custom:Sys-0"


async def test_droid_byok_model_dropping_its_stream_is_a_clear_error(
    droid_cli: Path, make_env: EnvFactory, tmp_path: Path
) -> None:
    """The system's BYOK model cuts every stream mid-way: droid gives up quickly with an
    error that says so; the key is not in it. (HTTP 500 and 529 it retries for longer than
    90 s on its own, with no setting to bound that: the step's timeout ends such a run.)"""
    from services.worker_wrapper.agents.factory_droid import DroidByok

    script = ModelScript([Failure(drop_stream=True)], repeat_failures=True)
    with serve_anthropic(script) as fake:
        byok = DroidByok(base_url=fake.url, model="scripted-model")
        agent = FactoryDroidAgent([str(droid_cli)], byok=byok)
        env = make_env(ANTHROPIC_API_KEY=PLANTED_KEY)
        started = time.monotonic()
        result = await agent.run(AgentRequest("r1", "go", tmp_path, 60.0, env), Recorder())
    assert result.status == "error"
    assert "LLM response contained no usable output" in (result.error or ""), result.error
    assert PLANTED_KEY not in (result.error or "")
    assert time.monotonic() - started < 45
    assert script.conversation_requests >= 1
