"""What the manager puts in a worker's agent environment: keys, identity, PATH, the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from services.worker_manager.adapters import adapter_env, choose_adapter
from services.worker_manager.agent_env import (
    agent_env,
    git_identity_env,
    with_orchestrator_on_path,
)
from services.worker_manager.errors import InvalidWorkerConfigError
from services.worker_manager.settings import WorkerManagerSettings
from services.worker_wrapper.agents import ClaudeCodeAgent, CodexAgent, build_agent
from services.worker_wrapper.settings import WrapperSettings
from tests.support.agents import PLANTED_KEY


def test_named_credentials_pass_when_set_and_only_then() -> None:
    """ANTHROPIC_* / FACTORY_API_KEY / OPENAI_* of the manager's env reach the agent; others
    and empty ones do not."""
    source = {
        "ANTHROPIC_API_KEY": PLANTED_KEY,
        "OPENAI_BASE_URL": "http://gateway/v1",
        "FACTORY_API_KEY": "",
        "AWS_SECRET_ACCESS_KEY": "nope-123456",
    }
    env = agent_env(WorkerManagerSettings(), "claude-code", source)
    assert env["ANTHROPIC_API_KEY"] == PLANTED_KEY
    assert env["OPENAI_BASE_URL"] == "http://gateway/v1"
    assert "FACTORY_API_KEY" not in env
    assert "AWS_SECRET_ACCESS_KEY" not in env


def test_droids_byok_key_variable_passes_by_name() -> None:
    """`droid_byok.api_key_env` names a variable outside the default list: a droid worker
    gets it from the manager's environment; other adapters do not."""
    byok = {"base_url": "http://models.example", "model": "m", "api_key_env": "TEAM_KEY"}
    settings = WorkerManagerSettings.model_validate({"droid_byok": byok})
    source = {"TEAM_KEY": PLANTED_KEY}
    assert agent_env(settings, "factory-droid", source)["TEAM_KEY"] == PLANTED_KEY
    assert "TEAM_KEY" not in agent_env(settings, "claude-code", source)
    assert "TEAM_KEY" not in agent_env(settings, "factory-droid", {})


def test_references_resolve_from_env_and_file(tmp_path: Path) -> None:
    """`env:NAME` and `file:/path` give the agent variable its value (file: one newline off)."""
    key_file = tmp_path / "anthropic.key"
    key_file.write_text(f"{PLANTED_KEY}\n")
    settings = WorkerManagerSettings(
        agent_env={"ANTHROPIC_API_KEY": f"file:{key_file}", "OPENAI_API_KEY": "env:MY_OPENAI"}
    )
    env = agent_env(settings, "codex", {"MY_OPENAI": "sk-openai-123456"})
    assert env["ANTHROPIC_API_KEY"] == PLANTED_KEY
    assert env["OPENAI_API_KEY"] == "sk-openai-123456"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("env:NOT_SET_ANYWHERE", "names an unset environment variable"),
        ("file:/nonexistent/key", "cannot be read"),
        ("file:relative/key", "must be an absolute path"),
        (PLANTED_KEY, "its reference must be env:NAME or file:/absolute/path"),
    ],
)
def test_bad_references_name_the_variable_not_a_value(ref: str, expected: str) -> None:
    """A reference that does not resolve is a clear error naming the variable, and never
    the key (a key pasted where its reference belongs is not echoed)."""
    settings = WorkerManagerSettings(agent_env={"ANTHROPIC_API_KEY": ref})
    with pytest.raises(InvalidWorkerConfigError) as caught:
        agent_env(settings, "claude-code", {"OTHER": PLANTED_KEY})
    assert "agent variable ANTHROPIC_API_KEY" in str(caught.value)
    assert expected in str(caught.value)
    assert PLANTED_KEY not in str(caught.value)


def test_each_adapter_commits_as_itself() -> None:
    """Per-adapter git identities; a malformed one is a clear error; none gives no variables."""
    env = git_identity_env(WorkerManagerSettings(), "factory-droid")
    assert env["GIT_AUTHOR_NAME"] == env["GIT_COMMITTER_NAME"] == "Factory Droid agent"
    assert env["GIT_AUTHOR_EMAIL"] == "factory-droid@orchestrator.invalid"
    custom = WorkerManagerSettings(git_identities={"claude-code": "Ada <ada@example.org>"})
    assert git_identity_env(custom, "claude-code")["GIT_COMMITTER_EMAIL"] == "ada@example.org"
    assert git_identity_env(custom, "builtin") == {}
    broken = WorkerManagerSettings(git_identities={"codex": "no email here"})
    with pytest.raises(InvalidWorkerConfigError, match="must read 'Name <email>'"):
        git_identity_env(broken, "codex")


def test_orchestrator_is_put_on_the_path() -> None:
    """The directory of this Python's `orchestrator` goes first on PATH, once."""
    scripts = str(Path(sys.executable).parent)
    path = with_orchestrator_on_path("/usr/bin:/bin")
    assert path.split(":")[0] == scripts
    assert with_orchestrator_on_path(path) == path


def test_agent_cli_maps_a_contract_agent_to_codex(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`agent_cli` runs Codex for `claude-code` workers; the wrapper builds the Codex adapter."""
    codex = tmp_path / "codex"
    codex.write_text("#!/bin/sh\n")
    codex.chmod(0o755)
    settings = WorkerManagerSettings(
        adapter="cli",
        codex_command=[str(codex)],
        codex_model="m-1",
        agent_cli={"claude-code": "codex"},
    )
    assert choose_adapter(settings, "claude-code") == "codex"
    for name, value in adapter_env(settings, "codex").items():  # as the wrapper gets them
        monkeypatch.setenv(name, value)
    wrapper = WrapperSettings(
        id="w", redis_url="redis://x", registry_key="k", workspace=tmp_path, session_dir=tmp_path
    )
    agent = build_agent(wrapper)
    assert isinstance(agent, CodexAgent)
    assert agent.command == [str(codex)]
    assert agent.model == "m-1"
    unmapped = WorkerManagerSettings(adapter="cli", droid_command=["/nonexistent/droid"])
    with pytest.raises(InvalidWorkerConfigError, match="'/nonexistent/droid' CLI"):
        choose_adapter(unmapped, "factory-droid")


def test_docker_workers_run_the_cli_of_their_image() -> None:
    """With the Docker runtime the CLI is the worker image's (not on the manager's PATH):
    `cli` and `auto` choose it all the same; the built-in agent stays the built-in one."""
    absent = ["claude-not-on-this-host"]
    for adapter in ("cli", "auto"):
        docker = WorkerManagerSettings(adapter=adapter, claude_command=absent, runtime="docker")
        assert choose_adapter(docker, "claude-code") == "claude-code"
    builtin = WorkerManagerSettings(adapter="builtin", claude_command=absent, runtime="docker")
    assert choose_adapter(builtin, "claude-code") == "builtin"
    local = WorkerManagerSettings(adapter="auto", claude_command=["claude-not-on-this-host"])
    assert choose_adapter(local, "claude-code") == "builtin"


def test_adapter_argv_holds_no_credential() -> None:
    """The keys stay in the environment: neither CLI's argv carries one."""
    env = {"OPENAI_API_KEY": PLANTED_KEY, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    argv = CodexAgent(model="m").argv("s-1", env)
    assert PLANTED_KEY not in json.dumps(argv)
    assert 'base_url = "http://127.0.0.1:9/v1"' in " ".join(argv)
    assert argv[-3:] == ["resume", "s-1", "-"]
    assert PLANTED_KEY not in " ".join(ClaudeCodeAgent().argv("s-1"))
