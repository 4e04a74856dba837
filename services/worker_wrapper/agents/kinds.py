"""The option values of the CLI adapters that the wrapper's settings name, in a module of
their own: reading the settings does not import the adapters."""

from __future__ import annotations

from typing import Literal

__all__ = ["AutonomyLevel", "CodexSandbox", "CommandOutputFormat"]

CodexSandbox = Literal["bypass", "danger-full-access", "workspace-write"]
AutonomyLevel = Literal["low", "medium", "high"]
CommandOutputFormat = Literal["text", "claude-stream-json", "droid-stream-json", "codex-json"]
