"""`orchestrator doctor`: what a user needs, found or not, and what to do about it.

Checks the agent CLIs (found, version, the adapter each agent gets), the agents' credentials
(by name: present or not, never a value), git, ansible, Redis and the database. Exits 1 when
something required is missing; an agent CLI that is missing is a warning (workers then run
the built-in agent).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["Check", "agent_checks", "agent_summary", "doctor", "tool_version"]

console = Console(highlight=False)
Level = Literal["ok", "warn", "fail"]
_MARK = {"ok": "[green]ok[/]  ", "warn": "[yellow]warn[/]", "fail": "[red]fail[/]"}
_VERSION_TIMEOUT_S = 20.0
CONTRACT_AGENTS = ("claude-code", "factory-droid")


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    level: Level
    what: str
    detail: str
    fix: str = ""


def tool_version(command: list[str]) -> str | None:
    """The first line `<command> --version` prints, or None when it cannot run."""
    if not command or shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(
            [*command, "--version"],
            capture_output=True,
            text=True,
            timeout=_VERSION_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else None


def agent_summary(settings: object) -> list[str]:
    """For each contract agent: the adapter a worker would get, and why (the same choice as
    the worker-manager's, without its log lines)."""
    from services.worker_manager.adapters import cli_command
    from services.worker_manager.settings import WorkerManagerSettings

    assert isinstance(settings, WorkerManagerSettings)
    if settings.adapter in ("builtin", "command"):
        return [f"{agent} → {settings.adapter}" for agent in CONTRACT_AGENTS]
    lines = []
    for agent in CONTRACT_AGENTS:
        cli = settings.agent_cli.get(agent, agent)
        command = cli_command(settings, cli)
        found = shutil.which(command[0]) if command else None
        if found:
            lines.append(f"{agent} → {cli} ({found})")
        elif settings.adapter == "cli":
            lines.append(f"{agent} → error: {command[0]!r} is not installed")
        else:
            lines.append(f"{agent} → built-in agent ({command[0]!r} not found)")
    return lines


def agent_checks(settings: object, environ: dict[str, str]) -> list[Check]:
    """The agent CLIs and the credentials they would get."""
    from services.worker_manager.agent_env import resolve_reference
    from services.worker_manager.errors import WorkerManagerError
    from services.worker_manager.settings import WorkerManagerSettings

    assert isinstance(settings, WorkerManagerSettings)
    checks = []
    commands = {
        "claude-code": settings.claude_command,
        "factory-droid": settings.droid_command,
        "codex": settings.codex_command,
    }
    for cli, command in commands.items():
        version = tool_version(command)
        if version:
            checks.append(Check("ok", f"agent CLI {cli}", f"{command[0]}: {version}"))
        else:
            package = {
                "claude-code": "@anthropic-ai/claude-code",
                "factory-droid": "@factory/cli",
                "codex": "@openai/codex",
            }[cli]
            checks.append(
                Check(
                    "warn",
                    f"agent CLI {cli}",
                    f"{command[0]!r} not found or not working",
                    f"npm install -g {package}",
                )
            )
    for line in agent_summary(settings):
        failed = " → error: " in line
        checks.append(Check("fail" if failed else "ok", "worker agent", line))
    present = [name for name in settings.agent_credentials if environ.get(name)]
    keys_to_set = [n for n in settings.agent_credentials if "KEY" in n or "TOKEN" in n]
    for name, ref in settings.agent_env.items():
        try:
            resolve_reference(name, ref, environ)
            present.append(f"{name} (from {ref.partition(':')[0]}:)")
        except WorkerManagerError as error:
            checks.append(Check("fail", "agent credential", str(error)))
    keys = [name for name in present if "KEY" in name or "TOKEN" in name]
    if settings.droid_byok is not None:
        byok = settings.droid_byok
        variable = byok.key_variable
        found = bool(environ.get(variable)) or variable in settings.agent_env
        where = f"{byok.model} ({byok.provider}) at {byok.base_url}, key from {variable}"
        checks.append(
            Check(
                "ok" if found else "fail",
                "droid BYOK model",
                where if found else f"{where}: {variable} is not set",
                ""
                if found
                else f"export {variable}, or give it in ORCHESTRATOR_WORKERS__AGENT_ENV",
            )
        )
    checks.append(
        Check(
            "ok" if keys else "warn",
            "agent credentials",
            ("set: " + ", ".join(present)) if present else "none set",
            "" if keys else f"export one of {', '.join(keys_to_set)} (docs/agents.md)",
        )
    )
    return checks


def _system_checks() -> list[Check]:
    from shared.embedded import resolve_redis_url
    from shared.settings import Settings

    checks = []
    beside = Path(sys.executable).parent / "ansible-playbook"  # the virtualenv's own
    for tool, fix in (
        ("git", "install git"),
        (str(beside) if beside.exists() else "ansible-playbook", "make install"),
    ):
        version = tool_version([tool])
        level: Level = "ok" if version else "fail"
        name = Path(tool).name
        checks.append(Check(level, name, version or "not found", "" if version else fix))
    settings = Settings()
    url = resolve_redis_url(settings)
    if url is None:
        checks.append(Check("ok", "redis", "none running; `orchestrator up` starts its own"))
    else:
        import redis

        try:
            redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
            checks.append(Check("ok", "redis", f"{url} answers"))
        except redis.RedisError as error:
            checks.append(Check("fail", "redis", f"{url}: {error}", "start it, or unset REDIS_URL"))
    database = settings.effective_database_url
    shown = database.split("@")[-1] if "@" in database else database
    checks.append(Check("ok", "database", shown))
    return checks


def doctor() -> None:
    """Check what the system needs (agent CLIs, their keys by name, git, ansible, Redis)."""
    import os

    from services.settings import SystemSettings

    checks = agent_checks(SystemSettings().workers, dict(os.environ)) + _system_checks()
    for check in checks:
        fix = f"  → {check.fix}" if check.fix else ""
        line = f"{check.what}: {check.detail}{fix}"
        console.print(f"{_MARK[check.level]} {escape(line)}", soft_wrap=True)
    if any(check.level == "fail" for check in checks):
        raise typer.Exit(1)
