"""HTTP routes of tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status

from services.api.deps import (
    BearerDep,
    CallerDep,
    PageDep,
    SessionDep,
    authenticate,
    database,
    request_session,
)
from services.api.direct import Unavailable
from services.api.json_body import model_response
from services.api.tasks.models import Task
from services.api.tasks.service import TaskService, create_task_direct, read_task
from shared.api_client.schemas import Page, TaskCreateBody, TaskCreated, TaskSchedule, TaskUpdate
from shared.api_client.text import Identifier
from shared.contracts import TaskDTO, TaskStatus, TaskType
from shared.settings import TaskDeadlines

router = APIRouter(prefix="/api/tasks", tags=["tasks"])


async def task_service(request: Request, db: SessionDep) -> TaskService:
    """The request's task service, with the deadlines the application was configured with."""
    deadlines: TaskDeadlines = request.app.state.task_deadlines
    cap: float | None = getattr(request.app.state, "monthly_budget_usd", None)
    return TaskService(db, deadlines, cap)


ServiceDep = Annotated[TaskService, Depends(task_service)]


def _schedule(service: TaskService, task: Task) -> TaskSchedule:
    fields = {name: getattr(task, name) for name in TaskSchedule.model_fields}
    return TaskSchedule.model_validate({**fields, "deadline_at": service.deadline_of(task)})


CorrelationHeader = Annotated[
    str | None,
    Header(
        alias="X-Correlation-ID",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$",
        description="The caller's correlation id (e.g. a chat turn's); kept on the task and "
        "carried by its queue message. Default: a new one.",
    ),
]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TaskCreated)
async def create_task(
    body: TaskCreateBody,
    request: Request,
    caller: CallerDep,
    correlation_id: CorrelationHeader = None,
) -> Response:
    """Create a queued task; engineering and deploy tasks start their flow (via the outbox)."""
    # the hot write (chat turns, the flow's own tasks): one transaction on a direct
    # connection, without a session (services/api/direct.py); through the session for the
    # cases it leaves (caps, waiting turns, a busy database)
    deadlines: TaskDeadlines = request.app.state.task_deadlines
    cap: float | None = getattr(request.app.state, "monthly_budget_usd", None)
    created = await create_task_direct(
        database(request),
        caller,
        body,
        correlation_id=correlation_id,
        deadlines=deadlines,
        monthly_budget_usd=cap,
    )
    if isinstance(created, Unavailable):
        async with request_session(request) as db_session:
            task = await TaskService(db_session, deadlines, cap).create(
                caller, body, correlation_id=correlation_id
            )
        return model_response(TaskCreated.model_validate(task), status.HTTP_201_CREATED)
    task_created, wrote_outbox = created
    if wrote_outbox:  # its outbox row is committed: the relay publishes it now
        request.app.state.relay_wake.set()
    return model_response(task_created, status.HTTP_201_CREATED)


@router.get("")
async def list_tasks(
    caller: CallerDep,
    tasks: ServiceDep,
    page: PageDep,
    status: TaskStatus | None = None,
    project_id: Identifier | None = None,
    type: TaskType | None = None,
    owner_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Page[TaskDTO]:
    """List the tasks the caller may see, newest first."""
    rows, total = await tasks.list(
        caller,
        status=status,
        project_id=project_id,
        owner_id=owner_id,
        task_type=type,
        limit=page.limit,
        offset=page.offset,
    )
    items = [TaskDTO.model_validate(row) for row in rows]
    return Page[TaskDTO](items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/schedules")
async def list_task_schedules(
    caller: CallerDep,
    tasks: ServiceDep,
    page: PageDep,
    status: TaskStatus | None = None,
    type: TaskType | None = None,
) -> Page[TaskSchedule]:
    """Tasks with their deadline and re-drives, newest first (services and admins)."""
    caller.require("admin", "service")
    rows, total = await tasks.list(
        caller,
        status=status,
        project_id=None,
        owner_id=None,
        task_type=type,
        limit=page.limit,
        offset=page.offset,
    )
    items = [_schedule(tasks, row) for row in rows]
    return Page[TaskSchedule](items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{task_id}", response_model=TaskDTO)
async def get_task(task_id: Identifier, request: Request, credentials: BearerDep) -> Response:
    """One task."""
    # the hot read (langgraph before each step, consoles, CLIs polling): no session, the
    # credential cached and the task read in one direct statement (services/api/direct.py)
    caller = await authenticate(request, credentials)
    return model_response(await read_task(database(request), caller, task_id))


@router.patch("/{task_id}")
async def update_task(
    task_id: Identifier, body: TaskUpdate, caller: CallerDep, tasks: ServiceDep
) -> TaskDTO:
    """Change a task's status (along the lifecycle) or result (services and admins); the
    result of a completed or failed task is final."""
    return TaskDTO.model_validate(await tasks.update(caller, task_id, body))


@router.post("/{task_id}/cancel")
async def cancel_task(
    task_id: Identifier,
    caller: CallerDep,
    tasks: ServiceDep,
    correlation_id: CorrelationHeader = None,
) -> TaskDTO:
    """Cancel a queued or running task; the orchestrator sees it on the task's status. The
    caller's correlation id (e.g. the chat turn that asked) is on the cancel's log line."""
    return TaskDTO.model_validate(
        await tasks.cancel(caller, task_id, correlation_id=correlation_id)
    )


@router.get("/{task_id}/schedule")
async def get_task_schedule(
    task_id: Identifier, caller: CallerDep, tasks: ServiceDep
) -> TaskSchedule:
    """One task with its deadline and re-drives (services and admins)."""
    caller.require("admin", "service")
    return _schedule(tasks, await tasks.get(caller, task_id))


@router.post("/{task_id}/redrive")
async def redrive_task(task_id: Identifier, caller: CallerDep, tasks: ServiceDep) -> TaskSchedule:
    """Publish a queued task's queue message again (services and admins): the same task id
    and correlation id, written to the outbox with the count in one transaction. For a
    message lost before the orchestrator took it (dead-lettered, or on a stream lost with
    Redis); the orchestrator starts at most one flow per task."""
    return _schedule(tasks, await tasks.redrive(caller, task_id))
