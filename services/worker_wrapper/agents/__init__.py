"""Coding agents behind one `Agent` protocol: Claude Code, Factory Droid, Codex, any command,
built-in.

`build_agent` picks the adapter the wrapper's settings name and imports only its module: a
worker pays for the adapter it runs, not for all of them (the codex and droid adapters bring
httpx, the built-in one the contracts). The adapter classes are importable from here as
before; each is imported on first use.
"""

from __future__ import annotations

import importlib
import os
import pwd
import re
from typing import TYPE_CHECKING, Any

from services.worker_wrapper.agents.base import (
    ActivitySink,
    Agent,
    AgentActivity,
    AgentRequest,
    AgentResult,
)
from services.worker_wrapper.errors import AgentConfigError

if TYPE_CHECKING:
    from services.worker_wrapper.agents.builtin import BuiltinAgent
    from services.worker_wrapper.agents.claude_code import ClaudeCodeAgent
    from services.worker_wrapper.agents.codex import CodexAgent
    from services.worker_wrapper.agents.command import CommandAgent
    from services.worker_wrapper.agents.factory_droid import FactoryDroidAgent
    from services.worker_wrapper.settings import WrapperSettings

__all__ = [
    "ActivitySink",
    "Agent",
    "AgentActivity",
    "AgentRequest",
    "AgentResult",
    "BuiltinAgent",
    "ClaudeCodeAgent",
    "CodexAgent",
    "CommandAgent",
    "FactoryDroidAgent",
    "build_agent",
    "preload_adapter",
    "resolve_user",
]


_ADAPTER_MODULES = {
    "BuiltinAgent": "builtin",
    "ClaudeCodeAgent": "claude_code",
    "CodexAgent": "codex",
    "CommandAgent": "command",
    "FactoryDroidAgent": "factory_droid",
}


def __getattr__(name: str) -> Any:
    """The adapter classes, imported when first asked for."""
    module = _ADAPTER_MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def preload_adapter(adapter: str) -> None:
    """Import the modules adapter `adapter` (a `WORKER_ADAPTER` value) runs with, ahead of
    its task (a warm wrapper); an unknown name imports nothing (the bound settings refuse it)."""
    for module in _ADAPTER_IMPORTS.get(adapter, ()):
        importlib.import_module(f"{__name__}.{module}")


_ADAPTER_IMPORTS: dict[str, tuple[str, ...]] = {
    "claude-code": ("claude_code", "pricing"),
    "factory-droid": ("factory_droid", "pricing"),
    "codex": ("codex", "pricing"),
    "command": ("command",),
    "builtin": ("builtin", "builtin_po"),
}

_NUMERIC_USER = re.compile(r"^(?P<uid>\d+)(?::(?P<gid>\d+))?$")


def resolve_user(name: str | None) -> tuple[int, int] | None:
    """(uid, gid) of the user agents run as; None for no such setting."""
    if not name:
        return None
    numeric = _NUMERIC_USER.match(name)
    if numeric is not None:  # uid:gid (the Docker runtime's, whose image may not name it)
        uid, gid = int(numeric["uid"]), int(numeric["gid"] or numeric["uid"])
        if os.geteuid() != 0 and uid != os.geteuid():
            raise AgentConfigError(f"running agents as uid {uid} needs the wrapper to run as root")
        if uid == 0:
            raise AgentConfigError("agent user 0 is root; name an unprivileged user")
        return uid, gid
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise AgentConfigError(f"agent user {name!r} does not exist on this machine") from None
    if os.geteuid() != 0 and entry.pw_uid != os.geteuid():
        raise AgentConfigError(f"running agents as {name!r} needs the wrapper to run as root")
    return entry.pw_uid, entry.pw_gid


def build_agent(settings: WrapperSettings) -> Agent:
    """The adapter named by `settings.adapter`, configured from the settings."""
    run_as = resolve_user(settings.agent_user)
    if settings.adapter == "command":
        from services.worker_wrapper.agents.command import CommandAgent

        return CommandAgent(
            settings.command_template,
            output_format=settings.command_output_format,
            kill_grace_s=settings.kill_grace_s,
            run_as=run_as,
        )
    if settings.adapter not in ("claude-code", "factory-droid", "codex"):
        from services.worker_wrapper.agents.builtin import BuiltinAgent
        from services.worker_wrapper.agents.builtin_po import BuiltinPoAgent

        return BuiltinPoAgent(fallback=BuiltinAgent())
    from services.worker_wrapper.agents.cli_agent import CliOptions
    from services.worker_wrapper.agents.pricing import Budget

    budgets: list[Budget] = []
    if settings.month_budget_usd is not None:
        month = Budget(settings.month_budget_usd, settings.month_spent_usd, what="user month")
        budgets.append(month)
    options = CliOptions(
        kill_grace_s=settings.kill_grace_s,
        run_as=run_as,
        budget_usd=settings.task_budget_usd,
        budgets=budgets,
    )
    if settings.adapter == "claude-code":
        from services.worker_wrapper.agents.claude_code import ClaudeCodeAgent

        return ClaudeCodeAgent(
            settings.claude_command,
            permission_mode=settings.claude_permission_mode,
            model=settings.claude_model,
            max_retries=settings.claude_max_retries,
            root_sandbox=settings.claude_root_sandbox,
            **options,
        )
    if settings.adapter == "factory-droid":
        from services.worker_wrapper.agents.factory_droid import FactoryDroidAgent

        return FactoryDroidAgent(
            settings.droid_command,
            autonomy=settings.droid_autonomy,
            model=settings.droid_model,
            byok=settings.droid_byok,
            factory_home=settings.session_dir / "droid-home",
            **options,
        )
    from services.worker_wrapper.agents.codex import CodexAgent

    return CodexAgent(
        settings.codex_command,
        model=settings.codex_model,
        base_url=settings.codex_base_url,
        sandbox=settings.codex_sandbox,
        max_retries=settings.codex_max_retries,
        **options,
    )
