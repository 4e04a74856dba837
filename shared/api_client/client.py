"""`ApiClient`: the typed async client of the REST API (httpx); returns DTOs, raises typed
errors (`shared.api_client.errors`).

    async with ApiClient(settings.api.base_url, key=secret) as api:
        project = await api.create_project(ProjectCreate(name="shop"))
        created = await api.create_task(TaskCreate(project_id=project.id, type="engineering"))
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from shared.api_client.errors import ApiUnavailableError, error_for_status
from shared.api_client.schemas import (
    AgentRunCreate,
    AgentRunDTO,
    ApiKeyCreate,
    ApiKeyCreated,
    BudgetHold,
    DeployDTO,
    DeployHealthReport,
    DeployRecord,
    ErrorBody,
    Health,
    Page,
    PortAllocationDTO,
    ProjectImportBody,
    ProjectUpdate,
    ProjectView,
    SealedSecrets,
    SecretInfo,
    ServerCreate,
    ServerDTO,
    ServerStatus,
    ServerUpdate,
    TaskCreated,
    TaskSchedule,
    TaskUpdate,
    UsageReport,
    UserBudget,
    UserCreate,
)
from shared.contracts import (
    ProjectCreate,
    ProjectDTO,
    ProjectStatus,
    TaskCreate,
    TaskDTO,
    TaskStatus,
    TaskType,
    UserDTO,
)
from shared.observability.tracing import current_traceparent
from shared.settings import Settings

__all__ = ["ApiClient"]

M = TypeVar("M", bound=BaseModel)
_ALLOCATIONS = TypeAdapter(list[PortAllocationDTO])


async def _propagate_trace(request: httpx.Request) -> None:
    """Send the current span's `traceparent`, so the API's span joins the caller's trace."""
    traceparent = current_traceparent()
    if traceparent:
        request.headers["traceparent"] = traceparent


class ApiClient:
    """One HTTP connection pool to the API, authenticated with one credential."""

    def __init__(
        self,
        base_url: str,
        *,
        key: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=timeout_s,
            transport=transport,
            event_hooks={"request": [_propagate_trace]},
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> ApiClient:
        """A client for `settings.api.base_url` with the credential `settings.api.key`."""
        key = settings.api.key.get_secret_value() if settings.api.key else None
        return cls(settings.api.base_url, key=key, **kwargs)

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # users and keys ------------------------------------------------------------------------

    async def create_user(self, body: UserCreate) -> UserDTO:
        """Create a user (admins)."""
        return UserDTO.model_validate(await self._call("POST", "/api/users", body=body))

    async def me(self) -> UserDTO:
        """The user the credential acts as."""
        return UserDTO.model_validate(await self._call("GET", "/api/users/me"))

    async def get_user(self, user_id: int) -> UserDTO:
        """One user."""
        return UserDTO.model_validate(await self._call("GET", f"/api/users/{user_id}"))

    async def find_user(self, telegram_id: int) -> UserDTO | None:
        """The user with a Telegram id, or None (admins and services)."""
        page = await self._page(UserDTO, "/api/users", {"telegram_id": telegram_id})
        return page.items[0] if page.items else None

    async def create_key(self, body: ApiKeyCreate) -> ApiKeyCreated:
        """Create an API key or user token; the secret is returned this once."""
        return ApiKeyCreated.model_validate(await self._call("POST", "/api/keys", body=body))

    async def revoke_key(self, key_id: int) -> None:
        """Revoke a key (admins: any; services: user tokens); it stops working at once."""
        await self._call("DELETE", f"/api/keys/{key_id}")

    # projects ------------------------------------------------------------------------------

    async def create_project(
        self, body: ProjectCreate, *, owner_id: int | None = None
    ) -> ProjectView:
        """Create a draft project (owned by the caller's user, or `owner_id`)."""
        params = {"owner_id": owner_id} if owner_id is not None else None
        data = await self._call("POST", "/api/projects", body=body, params=params)
        return ProjectView.model_validate(data)

    async def import_project(
        self, body: ProjectImportBody, *, owner_id: int | None = None
    ) -> ProjectView:
        """Create a project from an existing git repository (its branches are mirrored into
        the project's own repository; the project starts `scaffolded`)."""
        params = {"owner_id": owner_id} if owner_id is not None else None
        data = await self._call("POST", "/api/projects/import", body=body, params=params)
        return ProjectView.model_validate(data)

    async def get_project(self, project_id: str) -> ProjectView:
        """One project (with its modules)."""
        return ProjectView.model_validate(await self._call("GET", f"/api/projects/{project_id}"))

    async def get_project_view(self, project_id: str) -> ProjectView:
        """One project with its modules."""
        return ProjectView.model_validate(await self._call("GET", f"/api/projects/{project_id}"))

    # project secrets -----------------------------------------------------------------------

    async def put_secret(self, project_id: str, name: str, value: str) -> SecretInfo:
        """Set a project's secret (stored encrypted; never read back)."""
        path = f"/api/projects/{project_id}/secrets/{name}"
        data = await self._call("PUT", path, json={"value": value})  # the API validates it
        return SecretInfo.model_validate(data)

    async def list_secrets(self, project_id: str) -> list[SecretInfo]:
        """The names of a project's secrets."""
        data = await self._call("GET", f"/api/projects/{project_id}/secrets")
        return [SecretInfo.model_validate(item) for item in data]

    async def delete_secret(self, project_id: str, name: str) -> None:
        """Remove a project's secret."""
        await self._call("DELETE", f"/api/projects/{project_id}/secrets/{name}")

    async def sealed_secrets(self, project_id: str) -> SealedSecrets:
        """A project's secrets, encrypted as stored (service credentials)."""
        data = await self._call("GET", f"/api/projects/{project_id}/secrets-sealed")
        return SealedSecrets.model_validate(data)

    async def list_projects(
        self,
        *,
        status: ProjectStatus | None = None,
        owner_id: int | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[ProjectDTO]:
        """A page of projects."""
        params = {"status": status, "owner_id": owner_id, "limit": limit, "offset": offset}
        return await self._page(ProjectDTO, "/api/projects", params)

    async def update_project(self, project_id: str, body: ProjectUpdate) -> ProjectView:
        """Change a project (status along the lifecycle)."""
        data = await self._call("PATCH", f"/api/projects/{project_id}", body=body)
        return ProjectView.model_validate(data)

    # deploys -------------------------------------------------------------------------------

    async def list_deploys(
        self, project_id: str, *, limit: int = 50, offset: int = 0
    ) -> Page[DeployDTO]:
        """A page of a project's deploy history, newest first."""
        params = {"limit": limit, "offset": offset}
        return await self._page(DeployDTO, f"/api/projects/{project_id}/deploys", params)

    async def record_deploy(self, project_id: str, task_id: str, body: DeployRecord) -> DeployDTO:
        """Record or update the deploy of a deploy task (services and admins)."""
        data = await self._call("PUT", f"/api/projects/{project_id}/deploys/{task_id}", body=body)
        return DeployDTO.model_validate(data)

    async def report_deploy_health(
        self, project_id: str, task_id: str, body: DeployHealthReport
    ) -> DeployDTO:
        """Record a serving release's health and restart count (services and admins)."""
        path = f"/api/projects/{project_id}/deploys/{task_id}/health"
        return DeployDTO.model_validate(await self._call("PUT", path, body=body))

    async def list_current_releases(
        self, *, owner_id: int | None = None, limit: int = 100, offset: int = 0
    ) -> Page[DeployDTO]:
        """The release each active project serves, with its health (users: their own)."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if owner_id is not None:
            params["owner_id"] = owner_id
        return await self._page(DeployDTO, "/api/deploys/current", params)

    async def rollback(
        self, project_id: str, sha: str | None = None, *, correlation_id: str | None = None
    ) -> TaskCreated:
        """Redeploy an earlier successful release (the one before the current, or `sha`);
        the deploy task keeps `correlation_id` (else the API makes a new one)."""
        # sent as given (not through `RollbackRequest`): the API's 422 names a bad sha
        body = {"sha": sha}
        headers = {"X-Correlation-ID": correlation_id} if correlation_id else None
        path = f"/api/projects/{project_id}/rollback"
        data = await self._call("POST", path, json=body, headers=headers)
        return TaskCreated.model_validate(data)

    # agent runs, usage, caps ---------------------------------------------------------------

    async def record_run(self, task_id: str, body: AgentRunCreate) -> AgentRunDTO:
        """Record one agent run of a task (services and admins)."""
        data = await self._call("POST", f"/api/tasks/{task_id}/runs", body=body)
        return AgentRunDTO.model_validate(data)

    async def list_runs(self, task_id: str) -> list[AgentRunDTO]:
        """The agent runs of a task, oldest first."""
        data = await self._call("GET", f"/api/tasks/{task_id}/runs")
        return [AgentRunDTO.model_validate(item) for item in data]

    async def usage(
        self, *, user_id: int | None = None, project_id: str | None = None
    ) -> UsageReport:
        """What agent runs cost (your own; admins: any user or project)."""
        params: dict[str, Any] = {}
        if user_id is not None:
            params["user_id"] = user_id
        if project_id is not None:
            params["project_id"] = project_id
        return UsageReport.model_validate(await self._call("GET", "/api/usage", params=params))

    async def get_budget(self, user_id: int) -> UserBudget:
        """A user's monthly cap and this month's spend."""
        return UserBudget.model_validate(await self._call("GET", f"/api/users/{user_id}/budget"))

    async def hold_budget(self, task_id: str) -> BudgetHold:
        """Let a task hold its share of its user's monthly cap before its agent starts
        (services, admins); 409 `budget_exceeded` when nothing remains."""
        return BudgetHold.model_validate(
            await self._call("POST", f"/api/tasks/{task_id}/budget-hold")
        )

    async def set_budget(self, user_id: int, monthly_cap_usd: float | None) -> UserBudget:
        """Set (or clear, with None) a user's own monthly cap (admins)."""
        # sent as given (not through `UserBudgetUpdate`): the API's 422 names a bad cap
        body = {"monthly_cap_usd": monthly_cap_usd}
        data = await self._call("PUT", f"/api/users/{user_id}/budget", json=body)
        return UserBudget.model_validate(data)

    # tasks ---------------------------------------------------------------------------------

    async def create_task(
        self, body: TaskCreate, *, correlation_id: str | None = None
    ) -> TaskCreated:
        """Create a task; engineering and deploy tasks start their flow. `correlation_id`
        (sent as `X-Correlation-ID`) is kept on the task and carried by its messages."""
        headers = {"X-Correlation-ID": correlation_id} if correlation_id else None
        data = await self._call("POST", "/api/tasks", body=body, headers=headers)
        return TaskCreated.model_validate(data)

    async def get_task(self, task_id: str) -> TaskDTO:
        """One task."""
        return TaskDTO.model_validate(await self._call("GET", f"/api/tasks/{task_id}"))

    async def list_tasks(
        self,
        *,
        status: TaskStatus | None = None,
        project_id: str | None = None,
        task_type: TaskType | None = None,
        owner_id: int | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[TaskDTO]:
        """A page of tasks."""
        params = {
            "status": status,
            "project_id": project_id,
            "type": task_type,
            "owner_id": owner_id,
            "limit": limit,
            "offset": offset,
        }
        return await self._page(TaskDTO, "/api/tasks", params)

    async def update_task(self, task_id: str, body: TaskUpdate) -> TaskDTO:
        """Change a task's status or result (services and admins)."""
        data = await self._call("PATCH", f"/api/tasks/{task_id}", body=body)
        return TaskDTO.model_validate(data)

    async def cancel_task(self, task_id: str, *, correlation_id: str | None = None) -> TaskDTO:
        """Cancel a queued or running task; the API logs the cancel with `correlation_id`."""
        headers = {"X-Correlation-ID": correlation_id} if correlation_id else None
        data = await self._call("POST", f"/api/tasks/{task_id}/cancel", headers=headers)
        return TaskDTO.model_validate(data)

    async def list_task_schedules(
        self,
        *,
        status: TaskStatus | None = None,
        task_type: TaskType | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[TaskSchedule]:
        """A page of tasks with their deadline and re-drives (services and admins)."""
        params = {"status": status, "type": task_type, "limit": limit, "offset": offset}
        return await self._page(TaskSchedule, "/api/tasks/schedules", params)

    async def get_task_schedule(self, task_id: str) -> TaskSchedule:
        """One task with its deadline and re-drives (services and admins)."""
        data = await self._call("GET", f"/api/tasks/{task_id}/schedule")
        return TaskSchedule.model_validate(data)

    async def redrive_task(self, task_id: str) -> TaskSchedule:
        """Publish a queued task's queue message again (services and admins)."""
        data = await self._call("POST", f"/api/tasks/{task_id}/redrive")
        return TaskSchedule.model_validate(data)

    # servers -------------------------------------------------------------------------------

    async def create_server(self, body: ServerCreate) -> ServerDTO:
        """Register a deploy server."""
        return ServerDTO.model_validate(await self._call("POST", "/api/servers", body=body))

    async def get_server(self, handle: str) -> ServerDTO:
        """One server."""
        return ServerDTO.model_validate(await self._call("GET", f"/api/servers/{handle}"))

    async def list_servers(
        self, *, status: ServerStatus | None = None, limit: int = 50, offset: int = 0
    ) -> Page[ServerDTO]:
        """A page of servers."""
        params = {"status": status, "limit": limit, "offset": offset}
        return await self._page(ServerDTO, "/api/servers", params)

    async def update_server(self, handle: str, body: ServerUpdate) -> ServerDTO:
        """Change a server."""
        data = await self._call("PATCH", f"/api/servers/{handle}", body=body)
        return ServerDTO.model_validate(data)

    async def allocate_port(self, handle: str, project_id: str) -> PortAllocationDTO:
        """The project's port on a server (reused when it has one)."""
        data = await self._call(
            "POST", f"/api/servers/{handle}/allocations", json={"project_id": project_id}
        )
        return PortAllocationDTO.model_validate(data)

    async def list_allocations(
        self, handle: str, *, project_status: ProjectStatus | None = None
    ) -> list[PortAllocationDTO]:
        """Every allocation of a server (only those of projects in `project_status`)."""
        params = {"project_status": project_status}
        return _ALLOCATIONS.validate_python(
            await self._call("GET", f"/api/servers/{handle}/allocations", params=params)
        )

    async def release_port(self, handle: str, project_id: str) -> None:
        """Free the project's port on a server."""
        await self._call("DELETE", f"/api/servers/{handle}/allocations/{project_id}")

    # health --------------------------------------------------------------------------------

    async def health(self) -> Health:
        """`/health`."""
        return Health.model_validate(await self._call("GET", "/health"))

    # plumbing ------------------------------------------------------------------------------

    async def _page(self, item: type[M], path: str, params: dict[str, Any]) -> Page[M]:
        data = await self._call("GET", path, params=params)
        return Page[item].model_validate(data)  # type: ignore[valid-type]  # runtime generic

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: BaseModel | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send a request; the decoded JSON of a success, a typed error otherwise."""
        if body is not None:
            json = body.model_dump(mode="json", exclude_unset=isinstance(body, _PATCHES))
        query = {k: _plain(v) for k, v in (params or {}).items() if v is not None}
        try:
            response = await self._http.request(
                method, path, json=json, params=query, headers=headers
            )
        except httpx.TransportError as error:
            raise ApiUnavailableError(
                f"API at {self._http.base_url} unreachable: {type(error).__name__}"
            ) from error
        if response.status_code >= 400:
            raise error_for_status(response.status_code, _error_body(response))
        if response.status_code == 204 or not response.content:
            return None
        return response.json()


_PATCHES = (ProjectUpdate, TaskUpdate, ServerUpdate)
"""Bodies sent with only the fields the caller set (a PATCH changes what it names)."""


def _plain(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


def _error_body(response: httpx.Response) -> ErrorBody:
    try:
        return ErrorBody.model_validate_json(response.content)
    except PydanticValidationError:
        text = response.text[:200] or response.reason_phrase
        return ErrorBody(code=f"http_{response.status_code}", message=text)
