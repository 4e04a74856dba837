"""HTTP routes of projects."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from services.api.deps import CallerDep, PageDep, SessionDep
from services.api.projects.importer import import_project
from services.api.projects.service import ProjectService
from services.api.tasks.router import ServiceDep as TasksDep
from shared.api_client.schemas import (
    Page,
    ProjectCreateBody,
    ProjectImportBody,
    ProjectUpdate,
    ProjectView,
)
from shared.api_client.text import Identifier
from shared.contracts import ProjectStatus

router = APIRouter(prefix="/api/projects", tags=["projects"])

OwnerId = Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Owner's user id.")]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_project(
    body: ProjectCreateBody, caller: CallerDep, db: SessionDep, owner_id: OwnerId = None
) -> ProjectView:
    """Create a draft project owned by the caller (admins and services pass `owner_id`)."""
    project = await ProjectService(db).create(caller, body, owner_id=owner_id)
    return ProjectView.model_validate(project)


@router.post("/import", status_code=status.HTTP_201_CREATED)
async def import_existing_project(
    body: ProjectImportBody,
    request: Request,
    caller: CallerDep,
    db: SessionDep,
    owner_id: OwnerId = None,
) -> ProjectView:
    """Create a project from an existing git repository: its branches and tags are mirrored
    into the project's own repository, and the project is `scaffolded` (not scaffolded from
    the templates). A bad, unreachable or empty source is refused (422 on `repo_url`) and
    creates nothing."""
    importer = getattr(request.app.state, "importer", None)
    project = await import_project(ProjectService(db), caller, importer, body, owner_id=owner_id)
    return ProjectView.model_validate(project)


@router.get("")
async def list_projects(
    caller: CallerDep,
    db: SessionDep,
    page: PageDep,
    status: ProjectStatus | None = None,
    owner_id: OwnerId = None,
) -> Page[ProjectView]:
    """List the projects the caller may see, newest first."""
    rows, total = await ProjectService(db).list(
        caller, status=status, owner_id=owner_id, limit=page.limit, offset=page.offset
    )
    items = [ProjectView.model_validate(row) for row in rows]
    return Page[ProjectView](items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{project_id}")
async def get_project(project_id: Identifier, caller: CallerDep, db: SessionDep) -> ProjectView:
    """One project."""
    return ProjectView.model_validate(await ProjectService(db).get(caller, project_id))


@router.patch("/{project_id}")
async def update_project(
    project_id: Identifier, body: ProjectUpdate, caller: CallerDep, db: SessionDep, tasks: TasksDep
) -> ProjectView:
    """Change a project's status (along the lifecycle), description, repository URL or
    number of engineering tasks run at once (`parallel_tasks`)."""
    project = await ProjectService(db).update(caller, project_id, body)
    if body.parallel_tasks is not None:  # more room: waiting tasks start now
        await tasks.release_turns(project.id)
    return ProjectView.model_validate(project)
