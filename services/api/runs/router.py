"""HTTP routes of agent runs (`/api/tasks/{id}/runs`), usage (`/api/usage`) and users'
monthly caps (`/api/users/{id}/budget`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from services.api.deps import CallerDep, SessionDep
from services.api.runs.service import RunService
from services.api.tasks.router import ServiceDep as TaskServiceDep
from shared.api_client.schemas import (
    AgentRunCreate,
    AgentRunDTO,
    BudgetHold,
    UsageReport,
    UserBudget,
    UserBudgetUpdate,
)
from shared.api_client.text import Identifier

router = APIRouter(prefix="/api", tags=["runs"])

UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]


async def run_service(request: Request, db: SessionDep, tasks: TaskServiceDep) -> RunService:
    """The request's run service, with the system's default monthly cap."""
    default_cap: float | None = getattr(request.app.state, "monthly_budget_usd", None)
    hold_usd: float | None = getattr(request.app.state, "task_hold_usd", None)
    return RunService(db, tasks, default_cap, hold_usd)


RunsDep = Annotated[RunService, Depends(run_service)]


@router.post(
    "/tasks/{task_id}/runs",
    status_code=status.HTTP_201_CREATED,
    responses={
        status.HTTP_200_OK: {
            "model": AgentRunDTO,
            "description": "The task already has a run with this `run_key`: the stored run.",
        }
    },
)
async def record_run(
    task_id: Identifier,
    body: AgentRunCreate,
    caller: CallerDep,
    runs: RunsDep,
    response: Response,
) -> AgentRunDTO:
    """Record one agent run of a task (services and admins: the orchestrator). A record
    whose `run_key` the task already has answers 200 with the stored run (nothing new)."""
    run, created = await runs.record(caller, task_id, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return AgentRunDTO.model_validate(run)


@router.post("/tasks/{task_id}/budget-hold")
async def hold_budget(task_id: Identifier, caller: CallerDep, runs: RunsDep) -> BudgetHold:
    """Before a task's agent starts: hold its share of its user's monthly cap (services and
    admins: the orchestrator); 409 `budget_exceeded` when the month's spend and the user's
    other running tasks' holds leave nothing."""
    return await runs.hold(caller, task_id)


@router.get("/tasks/{task_id}/runs")
async def list_runs(task_id: Identifier, caller: CallerDep, runs: RunsDep) -> list[AgentRunDTO]:
    """The agent runs of a task, oldest first (whoever may read the task)."""
    return [AgentRunDTO.model_validate(row) for row in await runs.of_task(caller, task_id)]


@router.get("/usage")
async def get_usage(
    caller: CallerDep,
    runs: RunsDep,
    user_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    project_id: Identifier | None = None,
) -> UsageReport:
    """What agent runs cost, all time and this month, by project and task: your own; admins
    and services may ask for any user or project."""
    return await runs.usage(caller, user_id=user_id, project_id=project_id)


@router.get("/users/{user_id}/budget")
async def get_budget(user_id: UserId, caller: CallerDep, runs: RunsDep) -> UserBudget:
    """A user's monthly cap and this month's spend (themselves, admins, services)."""
    return await runs.budget(caller, user_id)


@router.put("/users/{user_id}/budget")
async def set_budget(
    user_id: UserId, body: UserBudgetUpdate, caller: CallerDep, runs: RunsDep
) -> UserBudget:
    """Set a user's own monthly cap in USD, or clear it with null (admins)."""
    return await runs.set_cap(caller, user_id, body)
