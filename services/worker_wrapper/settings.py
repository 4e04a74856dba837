"""Settings of one worker-wrapper process, read from its environment (prefix `WORKER_`).

The worker-manager builds this environment when it starts a worker; the wrapper strips
every variable it reads (`WORKER_*`, `REDIS_URL`) before starting the agent, so the agent
never sees the Redis address or the wrapper's controls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.worker_wrapper.agents.codex import CodexSandbox
from services.worker_wrapper.agents.command import CommandOutputFormat
from services.worker_wrapper.agents.factory_droid import AutonomyLevel
from shared.droid_byok import DroidByok

__all__ = ["CONTROL_ENV_PREFIXES", "AdapterName", "WrapperSettings"]

AdapterName = Literal["claude-code", "factory-droid", "codex", "command", "builtin"]
CONTROL_ENV_PREFIXES = ("WORKER_", "REDIS_URL", "ORCHESTRATOR_", "OTEL_")
"""Variables with these prefixes belong to the wrapper and never reach the agent (`OTEL_*`
configure the wrapper's own traces and may hold an exporter's credentials)."""


class WrapperSettings(BaseSettings):
    """Everything a wrapper needs to know; every field comes from the environment."""

    model_config = SettingsConfigDict(env_prefix="WORKER_", extra="ignore")

    id: str
    """The worker id; names the streams `worker:{id}:input` / `worker:{id}:output`."""
    redis_url: str = Field(validation_alias=AliasChoices("WORKER_REDIS_URL", "REDIS_URL"))
    registry_key: str
    """The Redis hash of this worker in the manager's registry (heartbeats go there)."""
    workspace: Path
    session_dir: Path
    """Where the agent session state lives (outlives the worker with a session volume)."""
    adapter: AdapterName = "builtin"
    task_id: str | None = None
    profile: str = "developer"
    """The worker's profile; developer workers answer the reserved `@orchestrator`
    directives themselves (see `directives.py`)."""
    """When set, agent activity is published as progress of this task."""
    heartbeat_interval_s: float = 2.0
    session_ttl_s: float = 6 * 3600
    """A session unused for longer than this is not resumed; the next prompt starts fresh."""
    kill_grace_s: float = 2.0
    orphan_after_s: float = 600.0
    """With Redis unreachable this long, the wrapper stops (its manager is gone for good)."""
    claude_command: list[str] = Field(default_factory=lambda: ["claude"])
    claude_permission_mode: str = "bypassPermissions"
    claude_model: str | None = None
    claude_max_retries: int | None = None
    """Retries of a failed model request (CLAUDE_CODE_MAX_RETRIES); None: the CLI's own."""
    task_budget_usd: float | None = None
    """Stop the agent (claude-code, codex, factory-droid) once this worker's runs cost this
    much (by the price table, `agents/prices.json`)."""
    month_budget_usd: float | None = None
    """The task's user's monthly cap (from the create command's context), with what the
    user spent this month before this worker (`month_spent_usd`): the agent is stopped once
    this worker's runs bring the month's spend to the cap."""
    month_spent_usd: float = 0.0
    claude_root_sandbox: bool = True
    """As root, tell the CLI it runs sandboxed (IS_SANDBOX=1) so it accepts bypassPermissions."""
    droid_command: list[str] = Field(default_factory=lambda: ["droid"])
    droid_autonomy: AutonomyLevel = "high"
    droid_model: str | None = None
    droid_byok: DroidByok | None = None
    """The BYOK model the adapter configures (JSON, from the manager's setting)."""
    codex_command: list[str] = Field(default_factory=lambda: ["codex"])
    codex_model: str | None = None
    codex_base_url: str | None = None
    codex_sandbox: CodexSandbox = "bypass"
    codex_max_retries: int = 2
    agent_user: str | None = None
    """Run the agent CLI as this (unprivileged) user; the wrapper must be root for it."""
    command_template: list[str] = Field(default_factory=list)
    command_output_format: CommandOutputFormat = "text"
    log_level: str = "INFO"
    ready_key: str | None = None
    """A bound warm wrapper's binding list: the wrapper reports `running` only once the
    manager pushes `go` there (its workspace is ready; see `worker_manager/pool.py`)."""
