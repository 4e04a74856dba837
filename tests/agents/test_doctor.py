"""`orchestrator doctor` and the agent line of `orchestrator up`, with the real CLIs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli.main import app
from services.cli.up import _agent_lines
from services.settings import SystemSettings
from tests.support.agents import AGENT_BIN, PLANTED_KEY

_AGENT_VARIABLES = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_MODEL",
    "FACTORY_API_KEY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
)


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No agent key, no worker settings, no running system of the checkout."""
    for name in _AGENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("ORCHESTRATOR_WORKERS__"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ORCHESTRATOR_DATA_DIR", str(tmp_path / "var"))


def run_doctor() -> tuple[int, str]:
    """`orchestrator doctor`: exit code and output."""
    result = CliRunner().invoke(app, ["doctor"])
    return result.exit_code, result.output


def test_doctor_finds_the_clis_their_versions_and_keys_by_name(
    claude_cli: Path, codex_cli: Path, droid_cli: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the CLIs on PATH and a key set: versions, adapters and the key's name; no value."""
    monkeypatch.setenv("PATH", f"{AGENT_BIN}:/usr/bin:/bin")
    monkeypatch.setenv("ANTHROPIC_API_KEY", PLANTED_KEY)
    code, output = run_doctor()
    assert code == 0, output
    assert "ok   agent CLI claude-code: claude: 2.1.332 (Claude Code)" in output
    assert "ok   agent CLI codex: codex: codex-cli 0.171.0" in output
    assert "ok   agent CLI factory-droid: droid: 0.225" in output
    assert f"claude-code → claude-code ({claude_cli})" in output
    assert "agent credentials: set: ANTHROPIC_API_KEY" in output
    assert "ok   git: git version" in output
    assert "ok   ansible-playbook: ansible-playbook [core" in output
    assert PLANTED_KEY not in output


def test_doctor_without_agents_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CLI, no key: warnings with the npm package and the variables; still exit 0."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("ORCHESTRATOR_WORKERS__CLAUDE_COMMAND", '["/nonexistent/claude"]')
    monkeypatch.setenv("ORCHESTRATOR_WORKERS__DROID_COMMAND", '["/nonexistent/droid"]')
    monkeypatch.setenv("ORCHESTRATOR_WORKERS__CODEX_COMMAND", '["/nonexistent/codex"]')
    code, output = run_doctor()
    assert code == 0, output
    assert "npm install -g @anthropic-ai/claude-code" in output
    assert "npm install -g @openai/codex" in output
    assert "claude-code → built-in agent ('/nonexistent/claude' not found)" in output
    assert "agent credentials: none set  → export one of ANTHROPIC_API_KEY" in output


def test_doctor_fails_on_what_would_fail_a_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """adapter=cli without the CLI, and a key reference that does not resolve: exit 1, named."""
    monkeypatch.setenv("ORCHESTRATOR_WORKERS__ADAPTER", "cli")
    monkeypatch.setenv("ORCHESTRATOR_WORKERS__DROID_COMMAND", '["/nonexistent/droid"]')
    monkeypatch.setenv(
        "ORCHESTRATOR_WORKERS__AGENT_ENV", f'{{"OPENAI_API_KEY": "file:{tmp_path}/missing"}}'
    )
    code, output = run_doctor()
    assert code == 1
    assert "fail worker agent: factory-droid → error: '/nonexistent/droid' is not installed" in (
        output
    )
    assert "fail agent credential: agent variable OPENAI_API_KEY: reference" in output


def test_up_names_the_agent_each_worker_gets(
    codex_cli: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`orchestrator up` prints the CLI behind each agent name (Codex when mapped)."""
    monkeypatch.setenv("ORCHESTRATOR_WORKERS__CODEX_COMMAND", f'["{codex_cli}"]')
    monkeypatch.setenv("ORCHESTRATOR_WORKERS__AGENT_CLI", '{"claude-code": "codex"}')
    monkeypatch.setenv("ORCHESTRATOR_WORKERS__DROID_COMMAND", '["/nonexistent/droid"]')
    assert _agent_lines(SystemSettings()) == [
        f"claude-code → codex ({codex_cli})",
        "factory-droid → built-in agent ('/nonexistent/droid' not found)",
    ]
    monkeypatch.setenv("ORCHESTRATOR_WORKERS__ADAPTER", "builtin")
    assert _agent_lines(SystemSettings()) == ["claude-code → builtin", "factory-droid → builtin"]


def test_doctor_names_droids_byok_model_and_its_key_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A BYOK model for droid: named with the variable of its key; that variable unset is a
    failure saying what to export; set, it is ok and its value is never shown."""
    byok = '{"base_url": "http://models.example", "model": "m1", "api_key_env": "TEAM_KEY"}'
    monkeypatch.setenv("ORCHESTRATOR_WORKERS__DROID_BYOK", byok)
    monkeypatch.delenv("TEAM_KEY", raising=False)
    code, output = run_doctor()
    assert code == 1
    assert "fail droid BYOK model: m1 (anthropic) at http://models.example, key from TEAM_KEY" in (
        output
    )
    assert "TEAM_KEY is not set  → export TEAM_KEY" in output
    monkeypatch.setenv("TEAM_KEY", PLANTED_KEY)
    code, output = run_doctor()
    assert "ok   droid BYOK model: m1 (anthropic) at http://models.example, key from TEAM_KEY" in (
        output
    )
    assert PLANTED_KEY not in output
