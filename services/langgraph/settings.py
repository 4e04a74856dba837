"""Settings of the langgraph actor: the tree's `langgraph` section (`ORCHESTRATOR_LANGGRAPH__*`).

`LanggraphSettings.of(settings)` (once, in `main`) completes the section with the data
directory, the API and the database of the system's `Settings`; tests build
`LanggraphSettings(...)` directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from shared.git import GitSettings
from shared.settings import Section, Settings

__all__ = ["LanggraphSettings", "StepTimeouts"]


class StepTimeouts(BaseModel):
    """The deadline of each awaited step, in seconds; a step past it fails its task."""

    scaffold_s: float = 900.0
    create_worker_s: float = 300.0
    agent_s: float = 1800.0
    """How long the developer agent may work on the spec (sent as the command's timeout)."""
    delete_worker_s: float = 120.0
    checks_s: float = 900.0
    """How long one run of the project's checks may take in the worker (every check)."""
    merge_s: float = 300.0
    """How long the worker may take to merge the base branch into the task branch."""
    integrate_wait_s: float = 3600.0
    """How long a task waits for its turn to integrate while other tasks of the project
    integrate (merge, checks, conflict resolution included)."""
    integration_turn_s: float = 7200.0
    """The longest a task holds a project's integration turn (a bound for a flow lost for
    good; a turn is given back when its task lands or ends, and broken when its task ended)."""
    deploy_s: float = 1800.0
    deploy_stop_s: float = 300.0
    """How long infra-service may take to stop and undo the deploy of a cancelled task."""
    health_check_s: float = 60.0
    """How long a deployed URL may take to answer HTTP 200."""
    server_ready_s: float = 300.0
    """How long a deploy waits for a server still being set up (none ready yet: e.g. the
    local server's first provisioning right after `orchestrator up`)."""
    api_s: float = 15.0
    """The timeout of one REST API call."""


class LanggraphSettings(Section):
    """Everything the langgraph actor needs; every field has an embedded default."""

    section = "langgraph"

    data_dir: Path = Path("var")
    checkpoint_url: str | None = None
    """`postgresql://...` for the PostgreSQL checkpointer; unset: SQLite under the data dir."""
    api_url: str = "http://127.0.0.1:8800"
    api_key: SecretStr | None = None
    concurrency: int = 64
    """How many messages of each stream are handled at once."""
    max_attempts: int = 5
    reclaim_idle_ms: int = 60_000
    sweep_interval_s: float = 1.0
    """How often waiting flows are checked for answers, deadlines and cancellations."""
    cancel_poll_s: float = 2.0
    """How often the API is asked which running tasks were cancelled."""
    status_fresh_s: float = Field(default=1.0, ge=0)
    """A step that acts skips asking the API whether its task was cancelled when the flow
    read the task's status less than this long ago (`start` moving it to running, the last
    step's check): a cancel in that window is honoured at the next step that asks, or by the
    sweeper while the flow waits. 0: every acting step asks."""
    lock_ttl_ms: int = 30_000
    """Lease of the per-task lock that keeps two replicas from advancing one flow at once."""
    shutdown_grace_s: float = 5.0
    """How long in-flight handlers may finish when the actor stops."""
    timeouts: StepTimeouts = Field(default_factory=StepTimeouts)
    branch_template: str = "task/{task_id}"
    """The branch a developer worker commits to."""
    default_modules: list[str] = Field(default_factory=lambda: ["backend"])
    worker_agent: Literal["claude-code", "factory-droid"] = "claude-code"
    worker_capabilities: list[str] = Field(default_factory=lambda: ["git", "python"])
    worker_attempts: int = Field(default=3, ge=1)
    """Developer workers a task may use: when its worker dies (the registry marks it failed:
    process gone, heartbeat lost), the spec goes to a new one. An agent that fails on a live
    worker fails the task at once."""
    fix_rounds: int = Field(default=2, ge=0)
    """How often failing checks go back to the agent (with their output) before the task
    fails; nothing is integrated while they fail."""
    conflict_rounds: int = Field(default=1, ge=0)
    """How often the agent is asked to resolve a conflict of merging the base branch
    before the task fails naming the conflicting files."""
    integrate_attempts: int = Field(default=3, ge=1)
    """How often a task merges the base branch into its branch because the base moved
    (other tasks integrated meanwhile) before it gives up."""
    turn_poll_s: float = Field(default=1.0, gt=0)
    """How often a task waiting for its project's integration turn asks again."""
    integration: Literal["merge", "pull_request"] = "merge"
    """How a task's branch reaches the base branch: `merge` (local repositories: the base
    fast-forwards to the checked, merged task branch; GitHub: a pull request merged through
    the API), or `pull_request` (GitHub: the pull request is opened and the task completes
    with its URL, the merge is left to a person). One setting for every project: projects
    have no settings of their own yet."""
    github_token_ref: str = "env:GITHUB_TOKEN"  # noqa: S105 - a reference, not a secret
    """A reference handed to infra-service, never a token."""
    secrets_ref_template: str = "project:{project_id}"
    """The reference to a project's secrets handed to infra-service, never the secrets:
    `project:ID` are the secrets stored through the API (and the legacy file
    `<data_dir>/secrets/ID.env`); `{data_dir}` may be used in a `file:` template."""
    git: GitSettings = Field(default_factory=GitSettings)

    @property
    def repo_owner(self) -> str:
        """Owner part of every project's repository (`<owner>/<slug>-<id8>`): `git.owner`,
        the one owner the git provider reaches."""
        return self.git.owner

    def within(self, system: Settings) -> LanggraphSettings:
        """The system's data dir and API (unless the section names its own), its API key
        and PostgreSQL database when the section has none."""
        update: dict[str, object] = {}
        if "data_dir" not in self.model_fields_set:
            update["data_dir"] = system.data_dir
        if "api_url" not in self.model_fields_set:
            update["api_url"] = system.api.base_url
        if self.api_key is None:
            update["api_key"] = system.api.key or system.api.service_key
        if self.checkpoint_url is None and (system.database_url or "").startswith("postgres"):
            update["checkpoint_url"] = system.database_url
        return self.model_copy(update=update)

    @property
    def checkpoint_path(self) -> Path:
        """The SQLite checkpoint file of the embedded mode."""
        return self.data_dir / "langgraph" / "checkpoints.sqlite"
