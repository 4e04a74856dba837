"""HTTP routes of the deploy history and of rollbacks (under `/api/projects/{id}`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from services.api.deploys.service import DeployService
from services.api.deps import CallerDep, PageDep, SessionDep
from services.api.tasks.router import CorrelationHeader
from services.api.tasks.router import ServiceDep as TaskServiceDep
from shared.api_client.schemas import (
    DeployDTO,
    DeployHealthReport,
    DeployRecord,
    Page,
    RollbackRequest,
    TaskCreated,
)

router = APIRouter(prefix="/api/projects", tags=["deploys"])
releases_router = APIRouter(prefix="/api/deploys", tags=["deploys"])


async def deploy_service(db: SessionDep, tasks: TaskServiceDep) -> DeployService:
    """The request's deploy service."""
    return DeployService(db, tasks)


DeploysDep = Annotated[DeployService, Depends(deploy_service)]


@router.get("/{project_id}/deploys")
async def list_deploys(
    project_id: str, caller: CallerDep, deploys: DeploysDep, page: PageDep
) -> Page[DeployDTO]:
    """The deploy history of a project, newest first: commit, task, outcome, URL, when."""
    rows, total = await deploys.list(caller, project_id, limit=page.limit, offset=page.offset)
    items = [DeployDTO.model_validate(row) for row in rows]
    return Page[DeployDTO](items=items, total=total, limit=page.limit, offset=page.offset)


@router.put("/{project_id}/deploys/{task_id}")
async def record_deploy(
    project_id: str, task_id: str, body: DeployRecord, caller: CallerDep, deploys: DeploysDep
) -> DeployDTO:
    """Record the deploy of a deploy task, or update it (services and admins; the flow)."""
    return DeployDTO.model_validate(await deploys.record(caller, project_id, task_id, body))


@router.post("/{project_id}/rollback", status_code=status.HTTP_201_CREATED)
async def rollback_project(
    project_id: str,
    body: RollbackRequest,
    caller: CallerDep,
    deploys: DeploysDep,
    correlation_id: CorrelationHeader = None,
) -> TaskCreated:
    """Redeploy an earlier successful release through the deploy flow: a deploy task whose
    spec is `commit <sha>`. Without `sha`, the release before the current one. The task
    keeps the caller's correlation id (`X-Correlation-ID`, e.g. the chat turn's)."""
    task = await deploys.rollback(caller, project_id, body.sha, correlation_id=correlation_id)
    return TaskCreated.model_validate(task)


@router.put("/{project_id}/deploys/{task_id}/health")
async def report_deploy_health(
    project_id: str,
    task_id: str,
    body: DeployHealthReport,
    caller: CallerDep,
    deploys: DeploysDep,
) -> DeployDTO:
    """Record a serving release's health and its supervisor's restart count (services and
    admins: the scheduler's probes). Going down, and coming back up, count as changes."""
    deploy = await deploys.report_health(caller, project_id, task_id, body)
    return DeployDTO.model_validate(deploy)


@releases_router.get("/current")
async def list_current_releases(
    caller: CallerDep,
    deploys: DeploysDep,
    page: PageDep,
    owner_id: Annotated[int | None, Query(description="Only this user's projects.")] = None,
) -> Page[DeployDTO]:
    """The release each active project serves (its newest succeeded deploy), with its
    health and restarts; users see their own projects only."""
    rows, total = await deploys.current(
        caller, owner_id=owner_id, limit=page.limit, offset=page.offset
    )
    items = [DeployDTO.model_validate(row) for row in rows]
    return Page[DeployDTO](items=items, total=total, limit=page.limit, offset=page.offset)
