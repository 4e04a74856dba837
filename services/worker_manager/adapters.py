"""Which agent adapter a worker runs, and the wrapper settings that configure it."""

from __future__ import annotations

import json
import shutil

import structlog

from services.worker_manager.errors import InvalidWorkerConfigError
from services.worker_manager.settings import WorkerManagerSettings

__all__ = ["adapter_env", "choose_adapter"]

log = structlog.get_logger("services.worker_manager")


def _installed(command: list[str]) -> bool:
    return bool(command) and shutil.which(command[0]) is not None


def choose_adapter(settings: WorkerManagerSettings, agent: str) -> str:
    """The adapter for a worker that asked for `agent` (`claude-code` / `factory-droid`)."""
    if settings.adapter == "builtin":
        return "builtin"
    if settings.adapter == "command":
        if not settings.command_template:
            raise InvalidWorkerConfigError(
                "adapter 'command' needs ORCHESTRATOR_WORKERS__COMMAND_TEMPLATE (a JSON list)"
            )
        return "command"
    command = settings.claude_command if agent == "claude-code" else settings.droid_command
    if _installed(command):
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
    return {
        "WORKER_ADAPTER": adapter,
        "WORKER_CLAUDE_COMMAND": json.dumps(settings.claude_command),
        "WORKER_CLAUDE_PERMISSION_MODE": settings.claude_permission_mode,
        "WORKER_DROID_COMMAND": json.dumps(settings.droid_command),
        "WORKER_DROID_AUTONOMY": settings.droid_autonomy,
        "WORKER_COMMAND_TEMPLATE": json.dumps(settings.command_template),
        "WORKER_COMMAND_OUTPUT_FORMAT": settings.command_output_format,
        "WORKER_SESSION_TTL_S": str(settings.session_ttl_s),
        "WORKER_HEARTBEAT_INTERVAL_S": str(settings.heartbeat_interval_s),
    }
