"""Which agent adapter a worker runs, and the wrapper settings that configure it."""

from __future__ import annotations

import json
import shutil

import structlog

from services.worker_manager.errors import InvalidWorkerConfigError
from services.worker_manager.settings import WorkerManagerSettings

__all__ = ["adapter_env", "choose_adapter", "cli_command"]

log = structlog.get_logger("services.worker_manager")


def _installed(command: list[str]) -> bool:
    return bool(command) and shutil.which(command[0]) is not None


def cli_command(settings: WorkerManagerSettings, cli: str) -> list[str]:
    """The command of an agent CLI (`claude-code`, `factory-droid`, `codex`)."""
    if cli == "codex":
        return settings.codex_command
    return settings.claude_command if cli == "claude-code" else settings.droid_command


def choose_adapter(settings: WorkerManagerSettings, agent: str) -> str:
    """The adapter for a worker that asked for `agent` (`claude-code` / `factory-droid`):
    the CLI `agent_cli` maps it to (default: its own), when installed. With the Docker
    runtime the CLI runs in the worker image, which carries claude, codex and droid: the
    host's PATH says nothing about it, so the CLI is chosen without looking."""
    if settings.adapter == "builtin":
        return "builtin"
    if settings.adapter == "command":
        if not settings.command_template:
            raise InvalidWorkerConfigError(
                "adapter 'command' needs ORCHESTRATOR_WORKERS__COMMAND_TEMPLATE (a JSON list)"
            )
        return "command"
    agent = settings.agent_cli.get(agent, agent)
    command = cli_command(settings, agent)
    if settings.runtime == "docker" or _installed(command):
        return agent
    if settings.adapter == "cli":
        raise InvalidWorkerConfigError(
            f"agent {agent!r} needs the {command[0]!r} CLI, which is not installed here; "
            "install it, or set ORCHESTRATOR_WORKERS__ADAPTER=builtin"
        )
    log.warning("agent_cli_missing_using_builtin", agent=agent, cli=command[0] if command else "")
    return "builtin"


def adapter_env(settings: WorkerManagerSettings, adapter: str) -> dict[str, str]:
    """The WORKER_* variables that configure the wrapper's adapter."""
    optional = {
        "WORKER_CLAUDE_MODEL": settings.claude_model,
        "WORKER_CLAUDE_MAX_RETRIES": settings.claude_max_retries,
        "WORKER_DROID_MODEL": settings.droid_model,
        "WORKER_CODEX_MODEL": settings.codex_model,
        "WORKER_CODEX_BASE_URL": settings.codex_base_url,
        "WORKER_AGENT_USER": settings.agent_user,
        "WORKER_TASK_BUDGET_USD": settings.task_budget_usd,
        "WORKER_DROID_BYOK": settings.droid_byok.model_dump_json() if settings.droid_byok else None,
    }
    return {name: str(value) for name, value in optional.items() if value is not None} | {
        "WORKER_ADAPTER": adapter,
        "WORKER_CLAUDE_COMMAND": json.dumps(settings.claude_command),
        "WORKER_CLAUDE_PERMISSION_MODE": settings.claude_permission_mode,
        "WORKER_CLAUDE_ROOT_SANDBOX": "true" if settings.claude_root_sandbox else "false",
        "WORKER_DROID_COMMAND": json.dumps(settings.droid_command),
        "WORKER_DROID_AUTONOMY": settings.droid_autonomy,
        "WORKER_CODEX_COMMAND": json.dumps(settings.codex_command),
        "WORKER_CODEX_SANDBOX": settings.codex_sandbox,
        "WORKER_CODEX_MAX_RETRIES": str(settings.codex_max_retries),
        "WORKER_COMMAND_TEMPLATE": json.dumps(settings.command_template),
        "WORKER_COMMAND_OUTPUT_FORMAT": settings.command_output_format,
        "WORKER_SESSION_TTL_S": str(settings.session_ttl_s),
        "WORKER_HEARTBEAT_INTERVAL_S": str(settings.heartbeat_interval_s),
    }
