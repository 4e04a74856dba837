"""Rules of projects: ownership, visibility, and the status lifecycle."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.api.auth.principal import Principal
from services.api.db import utc_now
from services.api.errors import ForbiddenError, InvalidRequestError, NotFoundError
from services.api.lifecycle import PROJECT_TRANSITIONS, check_transition
from services.api.projects.models import Project
from services.api.projects.repository import ProjectRepository
from services.api.users.repository import UserRepository
from shared.api_client.schemas import ProjectUpdate
from shared.contracts import ProjectCreate, ProjectStatus, new_id
from shared.git.naming import names_repository_of, repo_name

__all__ = ["ProjectService"]


class ProjectService:
    """Create, find, list and change projects as a given caller."""

    def __init__(self, session: AsyncSession) -> None:
        self.projects = ProjectRepository(session)
        self.users = UserRepository(session)

    async def create(
        self, principal: Principal, request: ProjectCreate, *, owner_id: int | None
    ) -> Project:
        """A new draft project, owned by the caller's user (admins and services may name one)."""
        return await self.projects.add(await self.new(principal, request, owner_id=owner_id))

    async def new(
        self, principal: Principal, request: ProjectCreate, *, owner_id: int | None
    ) -> Project:
        """A draft project checked like `create`, not stored yet (an import stores it once
        its repository is written, so no write transaction waits on git)."""
        if not request.name.strip():
            raise InvalidRequestError("name must not be blank", field="name")
        if owner_id is not None and not principal.sees_everything and owner_id != principal.user_id:
            raise InvalidRequestError(
                "a user creates projects only for themselves", field="owner_id"
            )
        owner = owner_id if owner_id is not None else principal.user_id
        if owner is None:
            raise InvalidRequestError(
                "this credential acts as no user: pass owner_id", field="owner_id"
            )
        if await self.users.get(owner) is None:
            raise NotFoundError(f"user {owner} not found", field="owner_id")
        return Project(
            id=new_id(),
            name=request.name,
            description=request.description,
            status=ProjectStatus.DRAFT.value,
            modules_text=",".join(getattr(request, "modules", None) or ["backend"]),
            owner_id=owner,
            created_at=utc_now(),
        )

    async def get(self, principal: Principal, project_id: str) -> Project:
        """A project the caller may see; `NotFoundError` otherwise (no existence leak)."""
        project = await self.projects.get(project_id)
        if project is None or not principal.can_see_owner(project.owner_id):
            raise NotFoundError(f"project {project_id!r} not found")
        return project

    async def list(
        self,
        principal: Principal,
        *,
        status: ProjectStatus | None,
        owner_id: int | None,
        limit: int,
        offset: int,
        archived: bool = True,
    ) -> tuple[Sequence[Project], int]:
        """A page of the projects the caller may see, filtered (`archived=False`: without
        the archived ones)."""
        if not principal.sees_everything:
            if owner_id is not None and owner_id != principal.user_id:
                return [], 0
            owner_id = principal.user_id
        return await self.projects.list(
            status=status.value if status else None,
            owner_id=owner_id,
            limit=limit,
            offset=offset,
            archived=archived,
        )

    async def update(self, principal: Principal, project_id: str, change: ProjectUpdate) -> Project:
        """Change a project; a status change must follow the lifecycle."""
        project = await self.get(principal, project_id)
        if change.status is not None:
            check_transition(
                "project", PROJECT_TRANSITIONS, ProjectStatus(project.status), change.status
            )
            project.status = change.status.value
        if "description" in change.model_fields_set:
            project.description = change.description
        if "repository_url" in change.model_fields_set:
            project.repository_url = self._repository_url(principal, project, change)
        if change.parallel_tasks is not None:
            project.parallel_tasks = change.parallel_tasks
        project.updated_at = utc_now()
        await self.projects.flush()
        return project

    @staticmethod
    def _repository_url(
        principal: Principal, project: Project, change: ProjectUpdate
    ) -> str | None:
        """The repository a project points at is the system's to record (the scaffolder, an
        import), never a user's: only service and admin credentials set it, and only to a URL
        naming this project's own repository (`<owner>/<slug>-<id8>`)."""
        if not principal.sees_everything:
            raise ForbiddenError(
                "the repository of a project is recorded by the system, not set by its users",
                field="repository_url",
            )
        url = change.repository_url
        if url is not None and not names_repository_of(url, project.id, project.name):
            raise InvalidRequestError(
                f"must be a plain URL of this project's own repository "
                f"('<owner>/{repo_name(project.id, project.name)}')",
                field="repository_url",
            )
        return url
