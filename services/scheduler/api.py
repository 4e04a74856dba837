"""What the scheduler needs from the REST API: a Protocol, the HTTP implementation, a fake.

The scheduler lists servers and tasks (with their deadlines) by status, changes a server's
status, re-drives a queued task's queue message and fails a task; it lists the releases that
serve and records their health and restart counts.
`HttpSchedulerApi` adapts the shared typed client (`shared.api_client.ApiClient`, Bearer
credential from `ApiSettings.key`); `MemorySchedulerApi` keeps servers and tasks in
dictionaries for tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from services.scheduler.errors import ApiCallError, ApiConflictError
from shared.api_client import ApiClient, ApiClientError, ApiStatusError, ConflictError
from shared.api_client.schemas import (
    DeployDTO,
    DeployHealthReport,
    ServerDTO,
    ServerStatus,
    ServerUpdate,
    TaskSchedule,
    TaskUpdate,
)
from shared.contracts import TaskStatus
from shared.settings import Settings

__all__ = ["HttpSchedulerApi", "MemorySchedulerApi", "SchedulerApi"]

_PAGE_LIMIT = 500
_MAX_PAGES = 100


class SchedulerApi(Protocol):
    """The REST API calls the scheduler makes."""

    async def list_servers(self, status: ServerStatus) -> list[ServerDTO]:
        """Every server with this status."""
        ...

    async def set_server_status(self, handle: str, status: ServerStatus) -> None:
        """Record a server's new status."""
        ...

    async def list_tasks(self, status: TaskStatus) -> list[TaskSchedule]:
        """Every task with this status, with its deadline and re-drives."""
        ...

    async def redrive_task(self, task_id: str) -> TaskSchedule:
        """Publish a queued task's queue message again; `ApiConflictError` when it is no
        longer queued."""
        ...

    async def fail_task(self, task_id: str, reason: str) -> None:
        """Move a task to `failed` with `{"error": reason}` as its result; `ApiConflictError`
        when it already left the status it was listed with."""
        ...

    async def list_current_releases(self) -> list[DeployDTO]:
        """The release each active project serves."""
        ...

    async def report_deploy_health(
        self, project_id: str, task_id: str, report: DeployHealthReport
    ) -> DeployDTO:
        """Record a release's health and restarts; `ApiConflictError` when it no longer
        serves."""
        ...


class HttpSchedulerApi:
    """`SchedulerApi` over the shared typed client (`shared.api_client.ApiClient`)."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpSchedulerApi:
        """A client on `settings.api.base_url`, authenticated with `settings.api.key`."""
        return cls(ApiClient.from_settings(settings))

    async def aclose(self) -> None:
        """Close the underlying HTTP client."""
        await self.client.aclose()

    async def list_servers(self, status: ServerStatus) -> list[ServerDTO]:
        """Every server with this status (all pages)."""
        servers: list[ServerDTO] = []
        for page_number in range(_MAX_PAGES):
            async with _translated("list servers"):
                page = await self.client.list_servers(
                    status=status, limit=_PAGE_LIMIT, offset=page_number * _PAGE_LIMIT
                )
            servers.extend(page.items)
            if len(servers) >= page.total or not page.items:
                break
        return servers

    async def set_server_status(self, handle: str, status: ServerStatus) -> None:
        """`PATCH /api/servers/{handle}` with the status only."""
        async with _translated("update server"):
            await self.client.update_server(handle, ServerUpdate(status=status))

    async def list_tasks(self, status: TaskStatus) -> list[TaskSchedule]:
        """Every task with this status, with its deadline (all pages)."""
        tasks: list[TaskSchedule] = []
        for page_number in range(_MAX_PAGES):
            async with _translated("list tasks"):
                page = await self.client.list_task_schedules(
                    status=status, limit=_PAGE_LIMIT, offset=page_number * _PAGE_LIMIT
                )
            tasks.extend(page.items)
            if len(tasks) >= page.total or not page.items:
                break
        return tasks

    async def redrive_task(self, task_id: str) -> TaskSchedule:
        """`POST /api/tasks/{task_id}/redrive`."""
        async with _translated("redrive task"):
            return await self.client.redrive_task(task_id)

    async def fail_task(self, task_id: str, reason: str) -> None:
        """`PATCH /api/tasks/{task_id}` to `failed` with the reason as the result."""
        body = TaskUpdate(status=TaskStatus.FAILED, result={"error": reason})
        async with _translated("fail task"):
            await self.client.update_task(task_id, body)

    async def list_current_releases(self) -> list[DeployDTO]:
        """`GET /api/deploys/current` (all pages)."""
        releases: list[DeployDTO] = []
        for page_number in range(_MAX_PAGES):
            async with _translated("list releases"):
                page = await self.client.list_current_releases(
                    limit=_PAGE_LIMIT, offset=page_number * _PAGE_LIMIT
                )
            releases.extend(page.items)
            if len(releases) >= page.total or not page.items:
                break
        return releases

    async def report_deploy_health(
        self, project_id: str, task_id: str, report: DeployHealthReport
    ) -> DeployDTO:
        """`PUT /api/projects/{project_id}/deploys/{task_id}/health`."""
        async with _translated("report deploy health"):
            return await self.client.report_deploy_health(project_id, task_id, report)


@contextlib.asynccontextmanager
async def _translated(operation: str) -> AsyncIterator[None]:
    """The client's errors as the scheduler's (their code, never the API's free text)."""
    try:
        yield
    except ConflictError as exc:
        raise ApiConflictError(f"{operation}: conflict ({exc.code})", code=exc.code) from exc
    except ApiStatusError as exc:
        raise ApiCallError(
            f"{operation}: HTTP {exc.status_code} ({exc.code})",
            status_code=exc.status_code,
            code=exc.code,
        ) from exc
    except ApiClientError as exc:
        raise ApiCallError(f"{operation}: {type(exc).__name__}") from exc


@dataclass
class MemorySchedulerApi:
    """`SchedulerApi` on dictionaries, for tests and local experiments."""

    servers: dict[str, ServerDTO] = field(default_factory=dict)
    tasks: dict[str, TaskSchedule] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    """Reason each task was failed with, by task id."""
    redrives: list[str] = field(default_factory=list)
    """Ids of the tasks re-driven, in order."""
    releases: dict[str, DeployDTO] = field(default_factory=dict)
    """The release each project serves, by project id."""
    health_reports: list[tuple[str, DeployHealthReport]] = field(default_factory=list)
    """(task id, report) of every health report, in order."""

    async def list_servers(self, status: ServerStatus) -> list[ServerDTO]:
        """Servers with this status."""
        return [s for s in self.servers.values() if s.status == status]

    async def set_server_status(self, handle: str, status: ServerStatus) -> None:
        """Change a server's status."""
        self.servers[handle] = self.servers[handle].model_copy(update={"status": status})

    async def list_tasks(self, status: TaskStatus) -> list[TaskSchedule]:
        """Tasks with this status."""
        return [t for t in self.tasks.values() if t.status == status]

    async def redrive_task(self, task_id: str) -> TaskSchedule:
        """Count a re-drive of a queued task; `ApiConflictError` for any other."""
        task = self.tasks[task_id]
        if task.status != TaskStatus.QUEUED:
            raise ApiConflictError(f"task {task_id} is {task.status.value}")
        update = {"redrive_count": task.redrive_count + 1, "redriven_at": datetime.now(UTC)}
        self.tasks[task_id] = task.model_copy(update=update)
        self.redrives.append(task_id)
        return self.tasks[task_id]

    async def fail_task(self, task_id: str, reason: str) -> None:
        """Fail a queued or running task; `ApiConflictError` for a finished one."""
        task = self.tasks[task_id]
        if task.status not in (TaskStatus.QUEUED, TaskStatus.RUNNING):
            raise ApiConflictError(f"task {task_id} is {task.status.value}")
        self.tasks[task_id] = task.model_copy(update={"status": TaskStatus.FAILED})
        self.failures[task_id] = reason

    async def list_current_releases(self) -> list[DeployDTO]:
        """The releases."""
        return list(self.releases.values())

    async def report_deploy_health(
        self, project_id: str, task_id: str, report: DeployHealthReport
    ) -> DeployDTO:
        """Record the report on the project's release; `ApiConflictError` for another task."""
        release = self.releases[project_id]
        if release.task_id != task_id:
            raise ApiConflictError(f"task {task_id} is not the release of {project_id}")
        update: dict[str, object] = {}
        if report.health is not None:
            update["health"] = report.health
        if report.restarts is not None:
            update["restarts"] = report.restarts
        self.releases[project_id] = release.model_copy(update=update)
        self.health_reports.append((task_id, report))
        return self.releases[project_id]
