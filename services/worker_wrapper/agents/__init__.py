"""Coding agents behind one `Agent` protocol: Claude Code, Factory Droid, Codex, any command,
built-in.

`build_agent` picks the adapter the wrapper's settings name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.worker_wrapper.agents.base import (
    ActivitySink,
    Agent,
    AgentActivity,
    AgentRequest,
    AgentResult,
)
from services.worker_wrapper.agents.builtin import BuiltinAgent
from services.worker_wrapper.agents.builtin_po import BuiltinPoAgent
from services.worker_wrapper.agents.claude_code import ClaudeCodeAgent
from services.worker_wrapper.agents.codex import CodexAgent
from services.worker_wrapper.agents.command import CommandAgent
from services.worker_wrapper.agents.factory_droid import FactoryDroidAgent

if TYPE_CHECKING:
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
]


def build_agent(settings: WrapperSettings) -> Agent:
    """The adapter named by `settings.adapter`, configured from the settings."""
    if settings.adapter == "claude-code":
        return ClaudeCodeAgent(
            settings.claude_command,
            permission_mode=settings.claude_permission_mode,
            kill_grace_s=settings.kill_grace_s,
            model=settings.claude_model,
            max_retries=settings.claude_max_retries,
            root_sandbox=settings.claude_root_sandbox,
        )
    if settings.adapter == "factory-droid":
        return FactoryDroidAgent(
            settings.droid_command,
            autonomy=settings.droid_autonomy,
            kill_grace_s=settings.kill_grace_s,
            model=settings.droid_model,
        )
    if settings.adapter == "codex":
        return CodexAgent(
            settings.codex_command,
            model=settings.codex_model,
            base_url=settings.codex_base_url,
            sandbox=settings.codex_sandbox,
            max_retries=settings.codex_max_retries,
            kill_grace_s=settings.kill_grace_s,
        )
    if settings.adapter == "command":
        return CommandAgent(
            settings.command_template,
            output_format=settings.command_output_format,
            kill_grace_s=settings.kill_grace_s,
        )
    return BuiltinPoAgent(fallback=BuiltinAgent())
