"""Settings of one worker-wrapper process, read from its environment (prefix `WORKER_`).

The worker-manager builds this environment when it starts a worker; the wrapper strips
every variable it reads (`WORKER_*`, `REDIS_URL`) before starting the agent, so the agent
never sees the Redis address or the wrapper's controls.

Read without pydantic-settings (whose import and sources cost a worker ~45 ms at every start):
`wrapper_env` picks the variables out of the environment the way pydantic-settings would
(prefix `WORKER_`, names case-insensitive, `REDIS_URL` as a fallback for `WORKER_REDIS_URL`,
list and object fields as JSON) and pydantic validates them as before; values passed to
`WrapperSettings(...)` win over the environment. `tests/workers/test_wrapper_start.py` pins that
both readings agree, bad values included.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.worker_wrapper.agents.kinds import AutonomyLevel, CodexSandbox, CommandOutputFormat
from shared.droid_byok import DroidByok

__all__ = ["CONTROL_ENV_PREFIXES", "ENV_PREFIX", "AdapterName", "WrapperSettings", "wrapper_env"]

AdapterName = Literal["claude-code", "factory-droid", "codex", "command", "builtin"]
CONTROL_ENV_PREFIXES = ("WORKER_", "REDIS_URL", "ORCHESTRATOR_", "OTEL_")
"""Variables with these prefixes belong to the wrapper and never reach the agent (`OTEL_*`
configure the wrapper's own traces and may hold an exporter's credentials)."""
ENV_PREFIX = "WORKER_"
_FALLBACKS = {"redis_url": ("redis_url",)}
"""Fields also read from a variable without the prefix (names in lower case)."""
_JSON_FIELDS = frozenset({"claude_command", "droid_command", "codex_command", "command_template"})
"""Fields whose variable is JSON; a value that is not JSON is an error."""
_JSON_OR_TEXT_FIELDS = frozenset({"droid_byok"})
"""Fields whose variable is JSON when it parses (else the text goes to validation as is)."""


class WrapperSettings(BaseModel):
    """Everything a wrapper needs to know; every field comes from the environment."""

    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)
    """Errors name the field and the problem, never the value (a Redis URL carries a
    password)."""

    id: str
    """The worker id; names the streams `worker:{id}:input` / `worker:{id}:output`."""
    redis_url: str
    """`WORKER_REDIS_URL`, or `REDIS_URL` when that is unset."""
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
    started_key: str | None = None
    """A bound warm wrapper's word back: it pushes `running` onto this list as it reports
    `running`, so the manager waiting on it wakes at once instead of polling the record."""

    def __init__(self, **values: Any) -> None:
        """The given values over the environment's (every field may come from either)."""
        super().__init__(**values)

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        """The environment's values under the ones given."""
        if not isinstance(data, dict):
            return data
        return {**wrapper_env(os.environ), **data}


def wrapper_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The values of `WrapperSettings`' fields in `environ`, by field name, before
    validation. A list field whose variable is not JSON is a `ValueError` naming the
    variable (not its value)."""
    lowered = {name.lower(): value for name, value in environ.items()}
    prefix = ENV_PREFIX.lower()
    found: dict[str, Any] = {}
    for field in WrapperSettings.model_fields:
        for name in (prefix + field, *_FALLBACKS.get(field, ())):
            if name in lowered:
                found[field] = _decode(field, name, lowered[name])
                break
    return found


def _decode(field: str, variable: str, value: str) -> Any:
    if field not in _JSON_FIELDS and field not in _JSON_OR_TEXT_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        if field in _JSON_OR_TEXT_FIELDS:
            return value
        raise ValueError(
            f'{variable.upper()} must be a JSON list of strings, e.g. ["claude", "--verbose"]'
        ) from None
