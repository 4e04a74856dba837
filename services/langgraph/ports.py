"""What the graph nodes delegate to: small Protocols, gathered in one frozen `FlowDeps`.

Nodes receive `FlowDeps` through LangGraph's runtime context (`Runtime[FlowDeps]`), never a
dict. The real implementations: `shared.messaging.Bus` (bus), `HttpApi` (api), a
`shared.git` provider (git), `HttpHealthCheck` (health); tests pass fakes where an outside
system cannot run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel

from services.langgraph.settings import LanggraphSettings
from services.langgraph.store import FlowStore
from shared.api_client.schemas import (
    AgentRunCreate,
    BudgetHold,
    DeployRecord,
    PortAllocationDTO,
    ServerDTO,
    ServerStatus,
    TaskUpdate,
    UserBudget,
)
from shared.contracts import ProgressEvent, ProjectDTO, ProjectStatus, TaskDTO
from shared.git import PullRequest, RemoteRepo

__all__ = ["ApiPort", "BusPort", "FlowDeps", "GitPort", "HealthPort", "WorkersPort"]


class BusPort(Protocol):
    """Publishing typed messages and progress (`shared.messaging.Bus`)."""

    async def publish(
        self,
        stream: str,
        message: BaseModel,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> str:
        """Write one message to a stream; returns the entry id."""
        ...

    async def progress(self, task_id: str, event: ProgressEvent) -> str:
        """Append a progress event of a task."""
        ...


class ApiPort(Protocol):
    """The REST API calls the flows make (errors: `ApiCallError`)."""

    async def get_task(self, task_id: str) -> TaskDTO:
        """One task."""
        ...

    async def update_task(self, task_id: str, change: TaskUpdate) -> TaskDTO:
        """Change a task's status or result (409 when the lifecycle refuses it)."""
        ...

    async def get_project(self, project_id: str) -> ProjectDTO:
        """One project."""
        ...

    async def set_project_status(self, project_id: str, status: ProjectStatus) -> ProjectDTO:
        """Move a project along its lifecycle (409 when the lifecycle refuses it)."""
        ...

    async def list_servers(self, status: ServerStatus | None = None) -> list[ServerDTO]:
        """Deploy servers, optionally of one status."""
        ...

    async def allocate_port(self, server_handle: str, project_id: str) -> PortAllocationDTO:
        """The project's port on the server (the same one again on a later deploy)."""
        ...

    async def list_allocations(self, server_handle: str) -> list[PortAllocationDTO]:
        """The ports allocated on a server."""
        ...

    async def active_deploys(self, project_id: str) -> set[str]:
        """Ids of the project's deploy tasks that are queued or running."""
        ...

    async def release_port(self, server_handle: str, project_id: str) -> None:
        """Free the project's port on the server (404 when it holds none)."""
        ...

    async def cancelled_task_ids(self, limit: int = 100) -> set[str]:
        """Ids of the most recently cancelled tasks."""
        ...

    async def record_deploy(self, project_id: str, task_id: str, record: DeployRecord) -> None:
        """Record or update the deploy of a deploy task in the project's history."""
        ...

    async def record_run(self, task_id: str, run: AgentRunCreate) -> None:
        """Store the record of one agent run of a task."""
        ...

    async def user_budget(self, user_id: int) -> UserBudget:
        """A user's monthly cap and this month's spend."""
        ...

    async def hold_budget(self, task_id: str) -> BudgetHold:
        """Hold the task's share of its user's monthly cap before its agent starts."""
        ...


class GitPort(Protocol):
    """Questions about remote repositories, and integration (a `shared.git.GitProvider`)."""

    @property
    def name(self) -> str:
        """`local` or `github`."""
        ...

    async def get_repo(self, full_name: str) -> RemoteRepo | None:
        """The repository, or None."""
        ...

    async def head_of(self, full_name: str, branch: str) -> str | None:
        """The commit a branch points at, or None."""
        ...

    async def heads_of(self, full_name: str, branches: Sequence[str]) -> list[str | None]:
        """`head_of` of each branch, in their order, asked at once."""
        ...

    async def commit_exists(self, full_name: str, sha: str) -> bool:
        """True when the repository holds the commit."""
        ...

    async def files_changed(self, full_name: str, sha: str) -> list[str]:
        """Paths the commit changed."""
        ...

    async def is_ancestor(self, full_name: str, ancestor: str, descendant: str) -> bool:
        """True when `descendant` contains `ancestor`."""
        ...

    async def diff_files(self, full_name: str, base: str, head: str) -> list[str]:
        """Paths that differ between two commits."""
        ...

    async def fast_forward(self, full_name: str, branch: str, *, expected: str, new: str) -> bool:
        """Compare-and-swap `branch` from `expected` to its descendant `new`."""
        ...

    async def pull_request(
        self, full_name: str, *, head: str, base: str, title: str, body: str
    ) -> PullRequest:
        """The pull request of `head` into `base` (opened when there is none)."""
        ...

    async def merge_pull_request(self, full_name: str, number: int, *, sha: str) -> PullRequest:
        """Merge the pull request at the expected head."""
        ...


class HealthPort(Protocol):
    """Does a deployed URL answer."""

    async def answers(self, url: str, *, timeout_s: float) -> bool:
        """True once `url` answers HTTP 200 within `timeout_s` (retrying meanwhile)."""
        ...


class WorkersPort(Protocol):
    """The worker registry, read-only (`services.langgraph.workers.RegistryWorkers`)."""

    async def status(self, worker_id: str) -> str | None:
        """The worker's status (`failed` once it died), or None when it has no record."""
        ...


@dataclass(frozen=True)
class FlowDeps:
    """Everything a node may use; handed to every node as the runtime context."""

    bus: BusPort
    api: ApiPort
    git: GitPort
    health: HealthPort
    store: FlowStore
    settings: LanggraphSettings
    workers: WorkersPort
    clock_s: Callable[[], float] = field(default=time.time)
    """Wall-clock seconds (deadlines are stored as epoch seconds in the checkpoint)."""
