"""The worker runtime interface: where and how a worker's wrapper process runs.

Two implementations: `local_runtime.LocalProcessRuntime` (the default: a subprocess per
worker, in a session of its own, with rlimits) and `docker_runtime.DockerRuntime` (a
container per worker with dropped capabilities and cgroup limits). Both serve the warm pool
(pool.py): `start` of a warm spec, then `binding` once a create claimed it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from services.worker_manager.settings import ResourceLimits

__all__ = ["WorkerExit", "WorkerRuntime", "WorkerSpec", "poll_exit"]


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

    @property
    def warm(self) -> bool:
        """True for a warm worker of the pool: started before any task, with an empty
        workspace, it waits for its binding (`WORKER_WARM=1`, see pool.py)."""
        return self.env.get("WORKER_WARM") == "1"


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

    async def wait_exit(self, ref: str, *, timeout_s: float, poll_s: float) -> bool:
        """True once the worker's process/container has ended, False while it still runs
        after `timeout_s`. A runtime the kernel can wake at the exit (local: a pidfd) does
        not poll; the others look every `poll_s` (`poll_exit`)."""
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

    @property
    def mounts_workspace(self) -> bool:
        """True when the worker sees its workspace through a mount made at its start (Docker):
        the manager then makes the files in that very directory (a prepared clone moved
        there would not be what the mount shows) and finishes them before `binding`, which
        hands them to the container's user."""
        ...

    def can_pool(self, repo_url: str | None) -> bool:
        """True when a warm worker, started before its task was known, can serve a task
        cloning `repo_url` (the Docker runtime mounts a local remote at start)."""
        ...

    async def is_current(self, ref: str) -> bool:
        """False when a (warm) worker runs what this runtime would no longer start (Docker:
        an image replaced since): the next run of the manager does not adopt it as warm."""
        ...

    async def binding(self, spec: WorkerSpec, ref: str) -> dict[str, str]:
        """Make a claimed warm worker's prepared files its own and answer the environment
        its wrapper gets: `spec.env` as the worker sees it (paths, Redis URL)."""
        ...


async def poll_exit(runtime: WorkerRuntime, ref: str, *, timeout_s: float, poll_s: float) -> bool:
    """`WorkerRuntime.wait_exit` by looking: `is_alive` every `poll_s` (after the first
    `poll_s`, so a short wait costs no look), until `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        await asyncio.sleep(max(min(poll_s, deadline - loop.time()), 0))
        if not await runtime.is_alive(ref):
            return True
        if loop.time() >= deadline:
            return False
