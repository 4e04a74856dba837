"""Rules of the deploy history and of rollbacks.

The deploy flow records each deploy task once it knows the commit (`outcome=running`) and
again when it ends (`PUT /api/projects/{id}/deploys/{task_id}`, services and admins). Users
read the history of the projects they may see (the same rule as projects).

Rollback (`POST /api/projects/{id}/rollback`) creates a deploy task whose spec names the
commit (`commit <sha>`, `shared.deploys`), so it runs through the same deploy flow. The
commit must be one this project has deployed successfully before: the history is what the
API knows about a project's code (it has no access to the repository), and a release that
once served is the only one known to be deployable. A full sha or an unambiguous prefix of
at least 4 hex digits is accepted; without one, the target is the newest successful release
whose commit differs from the current one (the newest successful release).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.api.auth.principal import Principal
from services.api.db import utc_now
from services.api.deploys.models import Deploy
from services.api.deploys.repository import DeployRepository
from services.api.errors import ConflictError, InvalidRequestError, NotFoundError
from services.api.projects.service import ProjectService
from services.api.tasks.models import Task
from services.api.tasks.repository import TaskRepository
from services.api.tasks.service import TaskService
from shared.api_client.schemas import (
    DeployHealth,
    DeployHealthReport,
    DeployOutcome,
    DeployRecord,
)
from shared.contracts import TaskCreate, TaskType
from shared.deploys import SHA_PREFIX, deploy_spec

__all__ = ["DeployService"]

_HISTORY_LIMIT = 1000
"""How far back a rollback looks for the release to go back to."""


class DeployService:
    """Record, list and roll back deploys as a given caller."""

    def __init__(self, session: AsyncSession, tasks: TaskService) -> None:
        self.deploys = DeployRepository(session)
        self.projects = ProjectService(session)
        self.task_rows = TaskRepository(session)
        self.tasks = tasks

    async def list(
        self, principal: Principal, project_id: str, *, limit: int, offset: int
    ) -> tuple[Sequence[Deploy], int]:
        """A page of the deploys of a project the caller may see, newest first."""
        await self.projects.get(principal, project_id)
        return await self.deploys.list(project_id, outcome=None, limit=limit, offset=offset)

    async def record(
        self, principal: Principal, project_id: str, task_id: str, record: DeployRecord
    ) -> Deploy:
        """Record (or update) the deploy of a deploy task (services and admins)."""
        principal.require("admin", "service")
        await self.projects.get(principal, project_id)
        found = await self.task_rows.get_with_owner(task_id)
        task = None if found is None else found[0]
        if task is None or task.project_id != project_id:
            raise NotFoundError(f"task {task_id!r} of project {project_id!r} not found")
        if task.type != TaskType.DEPLOY.value:
            raise InvalidRequestError(f"task {task_id} is a {task.type} task", field="task_id")
        deploy = await self.deploys.of_task(task_id)
        if deploy is None:
            deploy = Deploy(project_id=project_id, task_id=task_id, created_at=utc_now())
            self._apply(deploy, record)
            return await self.deploys.add(deploy)
        self._apply(deploy, record)
        await self.deploys.flush()
        return deploy

    async def current(
        self, principal: Principal, *, owner_id: int | None, limit: int, offset: int
    ) -> tuple[Sequence[Deploy], int]:
        """A page of the releases that serve (one per `active` project) the caller may see."""
        if not principal.sees_everything:
            if owner_id is not None and owner_id != principal.user_id:
                return [], 0
            owner_id = principal.user_id
        return await self.deploys.current(owner_id=owner_id, limit=limit, offset=offset)

    async def report_health(
        self, principal: Principal, project_id: str, task_id: str, report: DeployHealthReport
    ) -> Deploy:
        """Record a release's health and restart count (services and admins: the scheduler).

        A change of health is numbered (`health_changes`) when the release goes down, or
        comes back up after it was down; its first `up` is not a change anyone is told of.
        """
        principal.require("admin", "service")
        await self.projects.get(principal, project_id)
        deploy = await self.deploys.of_task(task_id)
        if deploy is None or deploy.project_id != project_id:
            raise NotFoundError(f"deploy of task {task_id!r} of project {project_id!r} not found")
        if deploy.outcome != DeployOutcome.SUCCEEDED.value:
            raise ConflictError(
                f"the deploy of task {task_id} is {deploy.outcome}, not a release that serves",
                field="task_id",
            )
        if report.health is not None and report.health.value != deploy.health:
            if deploy.health is not None or report.health == DeployHealth.DOWN:
                deploy.health_changes += 1
            deploy.health = report.health.value
            deploy.health_changed_at = utc_now()
        if report.restarts is not None:
            deploy.restarts = report.restarts
        await self.deploys.flush()
        return deploy

    @staticmethod
    def _apply(deploy: Deploy, record: DeployRecord) -> None:
        deploy.sha = record.sha
        deploy.kind = record.kind
        deploy.outcome = record.outcome.value
        deploy.url = record.url
        deploy.previous_serves = record.previous_serves
        deploy.error = record.error
        running = record.outcome == DeployOutcome.RUNNING
        deploy.finished_at = None if running else deploy.finished_at or utc_now()

    async def rollback(
        self,
        principal: Principal,
        project_id: str,
        sha: str | None,
        *,
        correlation_id: str | None = None,
    ) -> Task:
        """A deploy task of an earlier successful release (see the module docstring), with
        the caller's correlation id (else a new one)."""
        project = await self.projects.get(principal, project_id)
        if sha is not None and not SHA_PREFIX.match(sha):
            raise InvalidRequestError(
                f"{sha!r} is not a commit sha (4 to 40 hex digits)", field="sha"
            )
        succeeded, _ = await self.deploys.list(
            project.id, outcome=DeployOutcome.SUCCEEDED.value, limit=_HISTORY_LIMIT, offset=0
        )
        target = _target(succeeded, sha)
        return await self.tasks.create(
            principal,
            TaskCreate(project_id=project.id, type=TaskType.DEPLOY, spec=deploy_spec(target)),
            correlation_id=correlation_id,
        )


def _target(succeeded: Sequence[Deploy], sha: str | None) -> str:
    """The full sha to roll back to, among the successful deploys (newest first)."""
    if sha is None:
        if not succeeded:
            raise ConflictError("the project has no successful deploy to roll back", field="sha")
        current = succeeded[0].sha
        for deploy in succeeded:
            if deploy.sha != current:
                return deploy.sha
        raise ConflictError(
            f"no earlier successful release than the current one ({current[:12]}): "
            "name the commit with sha",
            field="sha",
        )
    prefix = sha.lower()
    matches = sorted({d.sha for d in succeeded if d.sha.startswith(prefix)})
    if not matches:
        raise InvalidRequestError(
            f"commit {sha} was never deployed successfully for this project", field="sha"
        )
    if len(matches) > 1:
        raise InvalidRequestError(
            f"{sha} names more than one deployed commit: {', '.join(m[:12] for m in matches)}",
            field="sha",
        )
    return matches[0]
