"""`ApiAdapter`: the flows' `ApiPort` over the typed REST client `shared.api_client.ApiClient`.

It narrows the client to the calls the flows make and turns the client's errors into
`ApiCallError` with the status code (None when the API could not be reached), so the graph
code depends on one small Protocol.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from services.langgraph.errors import ApiCallError
from shared.api_client import ApiClient, ApiClientError, ApiStatusError
from shared.api_client.schemas import (
    AgentRunCreate,
    BudgetHold,
    DeployRecord,
    PortAllocationDTO,
    ProjectUpdate,
    ServerDTO,
    ServerStatus,
    TaskUpdate,
    UserBudget,
)
from shared.contracts import ProjectDTO, ProjectStatus, TaskDTO, TaskStatus, TaskType

__all__ = ["ApiAdapter"]

T = TypeVar("T")


async def _call(operation: Awaitable[T]) -> T:
    try:
        return await operation
    except ApiStatusError as error:
        raise ApiCallError(str(error), status_code=error.status_code, code=error.code) from error
    except ApiClientError as error:
        raise ApiCallError(f"API unavailable: {error}") from error


class ApiAdapter:
    """`ApiPort` on an `ApiClient` (which the caller owns and closes)."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    async def get_task(self, task_id: str) -> TaskDTO:
        """One task."""
        return await _call(self.client.get_task(task_id))

    async def update_task(self, task_id: str, change: TaskUpdate) -> TaskDTO:
        """Change a task's status or result."""
        return await _call(self.client.update_task(task_id, change))

    async def get_project(self, project_id: str) -> ProjectDTO:
        """One project."""
        return await _call(self.client.get_project(project_id))

    async def set_project_status(self, project_id: str, status: ProjectStatus) -> ProjectDTO:
        """Move a project along its lifecycle."""
        return await _call(self.client.update_project(project_id, ProjectUpdate(status=status)))

    async def list_servers(self, status: ServerStatus | None = None) -> list[ServerDTO]:
        """Deploy servers (the first page, up to 100)."""
        page = await _call(self.client.list_servers(status=status, limit=100))
        return list(page.items)

    async def allocate_port(self, server_handle: str, project_id: str) -> PortAllocationDTO:
        """The project's port on the server."""
        return await _call(self.client.allocate_port(server_handle, project_id))

    async def list_allocations(self, server_handle: str) -> list[PortAllocationDTO]:
        """The ports allocated on a server."""
        return await _call(self.client.list_allocations(server_handle))

    async def active_deploys(self, project_id: str) -> set[str]:
        """Ids of the project's deploy tasks that are queued or running."""
        found: set[str] = set()
        for status in (TaskStatus.QUEUED, TaskStatus.RUNNING):
            page = await _call(
                self.client.list_tasks(
                    status=status, project_id=project_id, task_type=TaskType.DEPLOY, limit=100
                )
            )
            found.update(task.id for task in page.items)
        return found

    async def release_port(self, server_handle: str, project_id: str) -> None:
        """Free the project's port on the server."""
        await _call(self.client.release_port(server_handle, project_id))

    async def cancelled_task_ids(self, limit: int = 100) -> set[str]:
        """Ids of the most recently cancelled tasks."""
        page = await _call(self.client.list_tasks(status=TaskStatus.CANCELLED, limit=limit))
        return {task.id for task in page.items}

    async def record_deploy(self, project_id: str, task_id: str, record: DeployRecord) -> None:
        """Record or update the deploy of a deploy task."""
        await _call(self.client.record_deploy(project_id, task_id, record))

    async def record_run(self, task_id: str, run: AgentRunCreate) -> None:
        """Store the record of one agent run of a task."""
        await _call(self.client.record_run(task_id, run))

    async def user_budget(self, user_id: int) -> UserBudget:
        """A user's monthly cap and this month's spend."""
        return await _call(self.client.get_budget(user_id))

    async def hold_budget(self, task_id: str) -> BudgetHold:
        """Hold the task's share of its user's monthly cap (409 `budget_exceeded`: none)."""
        return await _call(self.client.hold_budget(task_id))
