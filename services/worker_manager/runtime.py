"""The worker runtime interface: where and how a worker's wrapper process runs.

Two implementations: `local_runtime.LocalProcessRuntime` (the default: a subprocess per
worker, in a session of its own, with rlimits) and `docker_runtime.DockerRuntime` (a
container per worker with dropped capabilities and cgroup limits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from services.worker_manager.settings import ResourceLimits

__all__ = ["WorkerExit", "WorkerRuntime", "WorkerSpec"]


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a runtime needs to start one worker."""

    worker_id: str
    manager_id: str
    env: dict[str, str]
    """The wrapper's whole environment (allowlisted variables, env_vars, WORKER_* controls)."""
    worker_dir: Path
    """The worker's private directory on the manager's host (workspace, log, home)."""
    workspace: Path
    session_dir: Path
    session_volume: str | None = None
    """The name of a session volume that outlives the worker, when one is kept."""
    limits: ResourceLimits = field(default_factory=ResourceLimits)

    @property
    def log_file(self) -> Path:
        """Where the wrapper's stdout and stderr go."""
        return self.worker_dir / "wrapper.log"


@dataclass(frozen=True)
class WorkerExit:
    """How a worker ended, as far as the runtime knows."""

    exit_code: int | None
    detail: str
    """A human-readable account: exit code or signal, and the tail of the wrapper's log."""


class WorkerRuntime(Protocol):
    """Starts, watches and stops worker wrapper processes."""

    @property
    def name(self) -> str:
        """`local` or `docker`."""
        ...

    async def start(self, spec: WorkerSpec) -> str:
        """Start the worker; answer its runtime reference (pid or container id)."""
        ...

    async def is_alive(self, ref: str) -> bool:
        """True while the worker's process/container runs."""
        ...

    async def exit_info(self, ref: str) -> WorkerExit:
        """How a dead worker ended (exit code and log tail when known)."""
        ...

    async def stop(self, ref: str, *, grace_s: float) -> None:
        """SIGTERM (the wrapper finishes its request), then kill the whole tree after grace."""
        ...

    async def list_owned(self, manager_id: str) -> dict[str, str]:
        """Live workers started by `manager_id` (this run or an earlier one): id → ref."""
        ...
