"""Settings of the worker-manager (prefix `ORCHESTRATOR_WORKERS__`), built once in main."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["AdapterChoice", "DockerSettings", "ResourceLimits", "WorkerManagerSettings"]

AdapterChoice = Literal["auto", "cli", "builtin", "command"]
"""How a worker's agent is run: `cli` runs the agent the config names (claude / droid);
`auto` does so when its CLI is installed and falls back to the built-in deterministic agent
(logged); `builtin` always uses the built-in agent; `command` uses `command_template`."""

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
    read_only: bool = True
    """Read-only root filesystem; /workspace, /session, /tmp and the home stay writable."""
    tmpfs_mb: int = 256
    """Size of each of the tmpfs mounts on /tmp and the agent's home."""


class WorkerManagerSettings(BaseSettings):
    """Everything the worker-manager can be told; every field has a working default."""

    model_config = SettingsConfigDict(
        env_prefix="ORCHESTRATOR_WORKERS__", env_nested_delimiter="__", extra="ignore"
    )

    manager_id: str = "worker-manager"
    """Names this manager's workers (labels, registry); its next run adopts them."""
    runtime: Literal["local", "docker"] = "local"
    data_dir: Path = Path("var/workers")
    """Workspaces, logs and session volumes of local workers."""
    adapter: AdapterChoice = "auto"
    claude_command: list[str] = Field(default_factory=lambda: ["claude"])
    claude_permission_mode: str = "bypassPermissions"
    droid_command: list[str] = Field(default_factory=lambda: ["droid"])
    droid_autonomy: Literal["low", "medium", "high"] = "high"
    command_template: list[str] = Field(default_factory=list)
    command_output_format: Literal["text", "claude-stream-json", "droid-stream-json"] = "text"
    env_allowlist: list[str] = Field(default_factory=lambda: list(DEFAULT_ENV_ALLOWLIST))
    """Variables of the manager's environment a worker inherits (plus its `env_vars`)."""
    limits: ResourceLimits = Field(default_factory=ResourceLimits)
    docker: DockerSettings = Field(default_factory=DockerSettings)
    start_timeout_s: float = 30.0
    stop_grace_s: float = 5.0
    idle_timeout_s: float = 3600.0
    """Workers without activity for this long are stopped; 0 disables reaping."""
    monitor_interval_s: float = 1.0
    liveness_poll_s: float = 0.25
    """How often a waiting send_message checks that its worker is still alive."""
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
