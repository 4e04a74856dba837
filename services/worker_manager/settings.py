"""Settings of the worker-manager: the tree's `workers` section (`ORCHESTRATOR_WORKERS__*`),
read once in main (`WorkerManagerSettings.of(settings)`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from shared.droid_byok import DroidByok
from shared.settings import Section, Settings

__all__ = [
    "AGENT_CREDENTIAL_VARS",
    "AdapterChoice",
    "AgentCli",
    "DockerSettings",
    "PoolSettings",
    "ResourceLimits",
    "WorkerManagerSettings",
]

AdapterChoice = Literal["auto", "cli", "builtin", "command"]
"""How a worker's agent is run: `cli` runs the agent the config names (claude / droid);
`auto` does so when its CLI is installed and falls back to the built-in deterministic agent
(logged); `builtin` always uses the built-in agent; `command` uses `command_template`."""

AgentCli = Literal["claude-code", "factory-droid", "codex"]
"""The agent CLIs the wrapper drives. A worker asks for an agent of the contract
(`claude-code` / `factory-droid`); `agent_cli` can map that name to another CLI (codex)."""

AGENT_CREDENTIAL_VARS = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_MODEL",
    "FACTORY_API_KEY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
)
"""The agents' credentials and model endpoints, passed from the manager's environment to
every worker's agent when set (`agent_credentials`)."""

DEFAULT_GIT_IDENTITIES = {
    "claude-code": "Claude Code agent <claude-code@orchestrator.invalid>",
    "factory-droid": "Factory Droid agent <factory-droid@orchestrator.invalid>",
    "codex": "Codex agent <codex@orchestrator.invalid>",
    "command": "orchestrator agent <agent@orchestrator.invalid>",
}

DEFAULT_ENV_ALLOWLIST = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
)


class ResourceLimits(BaseModel):
    """Limits of one worker. Local processes get rlimits; containers get cgroup limits."""

    memory_mb: int | None = None
    """Address-space (local) / memory (Docker) cap; None: no cap for local processes."""
    open_files: int = 4096
    max_processes: int | None = None
    """RLIMIT_NPROC for local workers (counts every process of the user!); pids for Docker."""
    file_size_mb: int | None = None
    cpus: float = 1.0
    """CPUs for Docker workers."""
    pids: int = 512
    """Process count cap for Docker workers."""


class DockerSettings(BaseModel):
    """The Docker runtime (see docs/docker.md)."""

    base_url: str | None = None
    """Engine address (`unix:///var/run/docker.sock`); None: from the environment."""
    image: str = "codegen-orchestrator-worker:latest"
    api_version: str = "auto"
    """Engine API version; `auto` asks the engine once (Docker 20.10 speaks up to 1.41,
    Docker 29 no longer below 1.44, so no fixed version fits every engine)."""
    network: str = ""
    """`""`: a bridge network of each worker's own; `host`: the host's network (the engine
    runs with `--bridge=none`, tests on loopback); any other name: that existing network
    (in compose, an internal network holding Redis and the egress proxy)."""
    network_prefix: str = "orchestrator-worker-"
    redis_url: str | None = None
    """The Redis URL as seen from inside a container; None: the manager's own."""
    user: str = "10001:10001"
    """uid:gid the wrapper runs as (the image's `agent`). A manager running as root hands
    the worker's workspace and session directory to it; a manager that is not root runs
    its containers as its own uid:gid instead."""
    separate_agent: bool = True
    """Run the agent as `user` and the wrapper as another uid: the container's root, left
    only the capabilities it needs to start the agent and to work in the agent's files
    (`WRAPPER_CAPABILITIES`); the agent gets none (empty bounding set, no-new-privileges),
    so it cannot read the wrapper's environment (its Redis credential) or memory, nor
    signal it. Needs a manager running as root (else the wrapper runs as its uid, as the
    agent does); False: wrapper and agent both run as `user`."""
    read_only: bool = True
    """Read-only root filesystem; /workspace, /session, /tmp and the home stay writable."""
    tmpfs_mb: int = 256
    """Size of each of the tmpfs mounts on /tmp and the agent's home."""
    pool_remote_dirs: list[Path] = Field(default_factory=list)
    """Directories of local git remotes (a local git provider's `repos_dir`) mounted, at
    the same path, into every warm container of the pool: a warm container starts before
    its task names a remote, and its mounts are fixed then. A task whose remote is a local
    directory outside these gets a container started for it instead of a warm one. Every
    warm container can then reach every repository under them that the workers' group may
    write (docs/docker.md); empty (the default): no local remote is pooled."""


class PoolSettings(BaseModel):
    """Warm workers (see docs/scale.md): wrappers started ahead of any task, one pool per
    (runtime, agent, profile); a create binds one to its task and another starts. A worker
    serves one task only and is never handed to another."""

    size: int = Field(default=0, ge=0, le=256)
    """Warm workers kept ready per (agent, profile) in use; 0: no pool (every create starts
    its own wrapper)."""
    idle_s: float = Field(default=900.0, gt=0)
    """A pool no create used for this long shrinks to nothing (its warm workers stop) until
    the next create of its (agent, profile); `prewarm` pools never shrink."""
    prewarm: list[str] = Field(default_factory=lambda: ["claude-code/developer"])
    """`agent/profile` pools filled as soon as the manager starts (when `size` > 0)."""
    spawn_concurrency: int = Field(default=2, ge=1, le=64)
    """Warm wrappers starting at once: an interpreter start is CPU-bound, and more at once
    than cores only makes every one of them later."""
    background_s: float = Field(default=10.0, gt=0)
    """How often the pool's background pass runs (in the monitor's loop): warm workers that
    died or went silent are dropped, pools unused for `idle_s` shrink, and the pools are
    topped up (a take refills its pool at once, without waiting for it)."""
    heartbeat_s: float = Field(default=10.0, gt=0)
    """How often a warm worker heartbeats (and wakes from its wait for a binding, which a
    push ends at once); at most a third of `heartbeat_timeout_s`. A bound worker beats every
    `heartbeat_interval_s`."""
    idle_priority: bool = True
    """Run warm workers of the local runtime at the lowest CPU priority until a create
    claims them (then back to the manager's): starting and waiting, they yield the CPU to
    the tasks' workers (`cpu_priority.py`). Only where the priority can be given back (root,
    or an autogroup's nice; else the warm workers keep the normal priority)."""


class WorkerManagerSettings(Section):
    """Everything the worker-manager can be told; every field has a working default."""

    section = "workers"

    manager_id: str = "worker-manager"
    """Names this manager's workers (labels, registry); its next run adopts them."""
    runtime: Literal["local", "docker"] = "local"
    data_dir: Path = Path("var/workers")
    """Workspaces, logs and session volumes of local workers."""
    adapter: AdapterChoice = "auto"
    claude_command: list[str] = Field(default_factory=lambda: ["claude"])
    claude_permission_mode: str = "bypassPermissions"
    claude_model: str | None = None
    claude_max_retries: int | None = None
    """CLAUDE_CODE_MAX_RETRIES of the agent; None: the CLI's default."""
    claude_root_sandbox: bool = True
    """Running as root, let Claude Code accept bypassPermissions (IS_SANDBOX=1): the worker
    is the sandbox. False: the CLI refuses to run as root (docs/agents.md)."""
    task_budget_usd: float | None = None
    """A cap in USD on what one worker's Claude Code runs cost (a task's worker): counted from
    the usage the CLI streams, at the prices of the wrapper's `prices.json`; reaching it stops
    the agent's process tree and fails the request with "budget exceeded: task <spent>/<cap>".
    None: no cap."""
    droid_command: list[str] = Field(default_factory=lambda: ["droid"])
    droid_autonomy: Literal["low", "medium", "high"] = "high"
    droid_model: str | None = None
    droid_byok: DroidByok | None = None
    """A model for droid that the system configures (base URL, model, provider, the
    variable holding its key): written into the CLI's settings for each run, over the
    user's own `~/.factory/settings.json`; under a cap, behind the wrapper's metering relay.
    None: droid uses its settings as they are (`droid_model` picks the model)."""
    codex_command: list[str] = Field(default_factory=lambda: ["codex"])
    codex_model: str | None = None
    codex_base_url: str | None = None
    """The Responses API of Codex's model; None: OPENAI_BASE_URL, else OpenAI's."""
    codex_sandbox: Literal["bypass", "danger-full-access", "workspace-write"] = "bypass"
    codex_max_retries: int = 2
    agent_cli: dict[str, AgentCli] = Field(default_factory=dict)
    """Which CLI serves a requested agent, e.g. `{"claude-code": "codex"}`; unmapped agents
    run their own CLI."""
    command_template: list[str] = Field(default_factory=list)
    command_output_format: Literal[
        "text", "claude-stream-json", "droid-stream-json", "codex-json"
    ] = "text"
    env_allowlist: list[str] = Field(default_factory=lambda: list(DEFAULT_ENV_ALLOWLIST))
    """Variables of the manager's environment a worker inherits (plus its `env_vars`)."""
    agent_credentials: list[str] = Field(default_factory=lambda: list(AGENT_CREDENTIAL_VARS))
    """Variables of the manager's environment handed to the agent when set (its keys)."""
    agent_env: dict[str, str] = Field(default_factory=dict)
    """Agent variables given by reference, resolved when a worker starts: NAME →
    `env:OTHER_NAME` or `file:/absolute/path` (e.g. `{"ANTHROPIC_API_KEY":
    "file:/run/secrets/anthropic"}`); they win over `agent_credentials`."""
    agent_user: str | None = None
    """Run agent CLIs as this existing unprivileged user (the manager must be root): each
    worker's workspace and session directory are handed to it, and its HOME is the session
    directory's `home`. None: agents run as the manager's user (as root, Claude Code is
    told it is sandboxed: `claude_root_sandbox`)."""
    git_identities: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_GIT_IDENTITIES))
    """The git author and committer (`Name <email>`) of each adapter's commits."""
    limits: ResourceLimits = Field(default_factory=ResourceLimits)
    docker: DockerSettings = Field(default_factory=DockerSettings)
    pool: PoolSettings = Field(default_factory=PoolSettings)
    mirror_repos: bool = True
    """Clone a task's repository from a local mirror of it (`data_dir/mirrors`, fetched
    before each clone) instead of from its remote; the clone's `origin` is still the remote."""
    start_timeout_s: float = 30.0
    stop_grace_s: float = 5.0
    idle_timeout_s: float = 3600.0
    """Workers without activity for this long are stopped; 0 disables reaping."""
    monitor_interval_s: float = 1.0
    liveness_poll_s: float = 0.25
    """How often a waiting send_message checks that its worker's container still runs (the
    Docker runtime; a local worker's exit wakes the manager at once, without looking)."""
    record_poll_s: float = 1.0
    """How often a waiting send_message reads its worker's record, for a worker failed or
    stopped by someone else (the monitor, a delete, another replica) while its process
    runs; such a stop ends the process too, which the runtime notices first."""
    heartbeat_interval_s: float = 2.0
    heartbeat_timeout_s: float = 30.0
    """A worker whose heartbeat is older than this is considered dead."""
    session_ttl_s: float = 6 * 3600
    record_ttl_s: int = 86400
    """How long the record of a stopped or failed worker stays visible."""
    redis_acl: bool = False
    """Give each worker a Redis ACL user of its own, allowed only its own streams and keys
    (see redis_users.py); the manager's Redis user needs the ACL commands. Off by default:
    the users live in the server's memory, and a restarted Redis without an ACL file would
    lock out the workers it adopts."""
    adopt_on_start: bool = True
    """On start, keep the live workers of this manager's previous run (else remove them)."""
    stop_workers_on_exit: bool = False
    """On shutdown, delete this manager's live workers instead of leaving them for the next
    run. `orchestrator up` turns it on when its Redis is private: that server stops with it,
    and a worker cut off from Redis stops itself. (After a `kill -9` of `up` no one deletes
    them: the next `up` starts Redis on the same port, and those still running are adopted.)"""
    concurrency: int = 64
    """Commands handled at once (a send_message waits for its answer)."""
    api_url: str | None = None
    """The API where workers' user-scoped keys are minted; None: the system's `api.base_url`."""
    api_key: SecretStr | None = None
    """The manager's own API credential (service scope) to mint and revoke those keys; None:
    the system's `api.key`, else its `api.service_key`."""

    def within(self, system: Settings) -> WorkerManagerSettings:
        """Under `<data_dir>/workers` of the system unless the section names its own."""
        if "data_dir" in self.model_fields_set:
            return self
        return self.model_copy(update={"data_dir": system.data_dir / "workers"})
