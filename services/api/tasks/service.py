"""Rules of tasks: creation with its queue message (outbox), the lifecycle, cancellation,
deadlines and re-drives.

Deadlines: each task gets `deadline_at` at creation, its creation plus the allowance of its
type (`ApiSettings.task_deadlines`); the scheduler fails a task still open past it. A
completed or failed task's result is final: a later, different result is refused (409), so
the reason a task was failed for (e.g. its deadline) is not overwritten by a late flow.

Re-drive: `redrive` publishes a queued task's queue message again (the same task id and
correlation id, through the outbox in the request's transaction) and counts it. The
orchestrator's flow is keyed by the task id, so a message that was not lost after all starts
nothing twice.

Task order: the engineering tasks of a project run at most `parallel_tasks` at a time (the
project's setting, default 1), in creation order. A new engineering task is stored with no
queue message (`released_at` NULL: it waits its turn); `release_turns` writes the messages
of the oldest waiting tasks while fewer than `parallel_tasks` released ones are open
(queued or running). It runs in the transaction that creates a task, that ends one
(completed, failed, cancelled) and that raises the setting, under a lock of the project's
row, so the message of the next task is committed with the end of the previous one: the
outbox publishes it even after a crash, and two concurrent requests cannot release twice. A
task's deadline counts from its release; waiting tasks are not re-driven.

Cancellation: `cancel` moves a queued or running task to `cancelled` and stamps
`cancelled_at`. That row is the record the orchestrator reads: langgraph checks the task's
status (`GET /api/tasks/{id}`) before each step and stops a cancelled flow, and any later
status change it tries (`running`, `completed`, ...) is refused with 409
`invalid_transition`, so a flow cannot overwrite a cancellation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.auth.principal import Principal
from services.api.db import Database, utc_now
from services.api.direct import UNAVAILABLE, DirectTransaction, Unavailable
from services.api.errors import (
    ConflictError,
    InvalidRequestError,
    InvalidTransitionError,
    NotFoundError,
)
from services.api.lifecycle import PROJECT_TRANSITIONS, TASK_TRANSITIONS, check_transition
from services.api.observe import annotate_current_span
from services.api.outbox.repository import OUTBOX_INSERT, OutboxRepository, row_values
from services.api.projects.service import ProjectService
from services.api.runs.caps import check_cap, check_month_cap
from services.api.tasks.models import Task
from services.api.tasks.repository import (
    CREATE_ENGINEERING_TASK,
    CREATE_PROJECT,
    CREATE_TURNS,
    TASK_AND_OUTBOX_INSERT,
    TASK_INSERT,
    TASK_READ,
    TaskRepository,
)
from shared import registry
from shared.api_client.schemas import TaskCreated, TaskUpdate
from shared.contracts import (
    DeployMessage,
    EngineeringMessage,
    ProjectStatus,
    TaskCreate,
    TaskDTO,
    TaskStatus,
    TaskType,
    new_id,
)
from shared.deploys import commit_of_spec
from shared.observability.metrics import SystemMetrics
from shared.settings import TaskDeadlines

__all__ = ["TaskService", "create_task_direct", "read_task"]

_QUEUE_OF: dict[TaskType, str] = {
    TaskType.ENGINEERING: registry.get("engineering:queue").name,
    TaskType.DEPLOY: registry.get("deploy:queue").name,
}
"""Task types that start a flow, and the queue their message goes to."""

_log = structlog.get_logger("services.api.tasks")
_ENDED = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})

_FINAL_RESULTS = frozenset({TaskStatus.COMPLETED.value, TaskStatus.FAILED.value})
"""Statuses whose result may no longer change (a cancelled task still records why it
stopped)."""


class TaskService:
    """Create, find, list, change, cancel and re-drive tasks as a given caller."""

    def __init__(
        self,
        session: AsyncSession,
        deadlines: TaskDeadlines | None = None,
        monthly_budget_usd: float | None = None,
    ) -> None:
        self.session = session
        self.monthly_budget_usd = monthly_budget_usd
        """The default monthly cap of users without their own (None: no cap)."""
        self.tasks = TaskRepository(session)
        self.projects = ProjectService(session)
        self.outbox = OutboxRepository(session)
        self.deadlines = deadlines or TaskDeadlines()

    async def create(
        self, principal: Principal, request: TaskCreate, *, correlation_id: str | None = None
    ) -> Task:
        """A queued task; for engineering and deploy, its message joins the outbox atomically.
        `correlation_id`: the caller's (validated by the route), else a new one.

        One query reads the project (locked for an engineering task, as `release_turns`
        locks it) and its owner's cap, a second one its turns; the task and its outbox row
        are then inserted in one flush. Only when engineering tasks of the project already wait for
        a turn does the create go through `release_turns` (the oldest are released first)."""
        engineering = request.type == TaskType.ENGINEERING
        found = await self.tasks.project_for_create(request.project_id, lock=engineering)
        project = None if found is None else found[0]
        user_id = _check_create(
            principal,
            request,
            None if project is None else (project.status, project.owner_id),
        )
        assert found is not None  # else `_check_create` raised
        assert project is not None
        owner_cap = found[1]
        if engineering and user_id is not None:
            if project.owner_id is not None:
                cap = owner_cap if owner_cap is not None else self.monthly_budget_usd
                await check_cap(self.session, user_id, cap)
            else:
                await check_month_cap(self.session, user_id, self.monthly_budget_usd)
        room, waiting = 0, False
        if engineering:  # read before the task is added (autoflush would count it)
            released_open, waiting = await self.tasks.turns(project.id)
            room = max(1, project.parallel_tasks) - released_open
        now = utc_now()
        task = Task(
            id=new_id(),
            project_id=project.id,
            user_id=user_id,
            type=request.type.value,
            status=TaskStatus.QUEUED.value,
            spec=request.spec,
            correlation_id=correlation_id or new_id(),
            created_at=now,
            deadline_at=now + timedelta(seconds=self.deadlines.of(request.type.value)),
            redrive_count=0,
        )
        stream = _QUEUE_OF.get(request.type)
        if stream is not None and user_id is None:
            raise _no_owner_to_run()
        self.session.add(task)
        if engineering and room > 0 and waiting:
            await self.tasks.flush()
            await self.release_turns(project.id, now=now)  # the oldest waiting ones first
        elif stream is not None and user_id is not None and (not engineering or room > 0):
            task.released_at = now  # its turn (or a deploy): its message now
            await self.outbox.add(
                stream,
                _message(task, request.type, user_id),
                correlation_id=task.correlation_id,
                flush=False,
            )
            await self.tasks.flush()
        else:
            await self.tasks.flush()  # it waits for its turn
        SystemMetrics.default().tasks_created.labels(task.type).inc()
        annotate_current_span(task_id=task.id, correlation_id=task.correlation_id)
        return task

    async def release_turns(self, project_id: str, *, now: datetime | None = None) -> list[Task]:
        """Write the queue messages of the project's oldest waiting engineering tasks while
        fewer than `parallel_tasks` released ones are open; returns the tasks released.
        `now`: the release time (default the current time)."""
        project = await self.tasks.lock_project(project_id)
        if project is None:
            return []
        room = max(1, project.parallel_tasks) - await self.tasks.count_released_open(project_id)
        if room <= 0:
            return []
        released: list[Task] = []
        for task in await self.tasks.waiting_engineering(project_id, limit=room):
            assert task.user_id is not None  # the query skips tasks whose owner was deleted
            task.released_at = now or utc_now()
            task.deadline_at = task.released_at + timedelta(seconds=self.deadlines.of(task.type))
            await self.outbox.add(
                _QUEUE_OF[TaskType.ENGINEERING],
                _message(task, TaskType.ENGINEERING, task.user_id),
                correlation_id=task.correlation_id,
            )
            released.append(task)
        await self.tasks.flush()
        return released

    async def _ended(self, task: Task) -> None:
        """A task ended: an engineering task hands its turn to the next one."""
        if task.type == TaskType.ENGINEERING.value:
            await self.release_turns(task.project_id)

    async def get(self, principal: Principal, task_id: str) -> Task:
        """A task the caller may see; `NotFoundError` otherwise."""
        found = await self.tasks.get_with_owner(task_id)
        if found is None or not principal.can_see_owner(found[1]):
            raise NotFoundError(f"task {task_id!r} not found")
        return found[0]

    async def read(self, principal: Principal, task_id: str) -> TaskDTO:
        """`get` as a `TaskDTO`, read in one query without ORM objects (the same rule: a
        task the caller may not see is not found)."""
        return _visible(principal, task_id, await self.tasks.read(task_id))

    async def list(
        self,
        principal: Principal,
        *,
        status: TaskStatus | None,
        project_id: str | None,
        owner_id: int | None,
        task_type: TaskType | None,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[Task], int]:
        """A page of the tasks the caller may see, filtered."""
        if not principal.sees_everything:
            if owner_id is not None and owner_id != principal.user_id:
                return [], 0
            owner_id = principal.user_id
        return await self.tasks.list(
            status=status.value if status else None,
            project_id=project_id,
            owner_id=owner_id,
            task_type=task_type.value if task_type else None,
            limit=limit,
            offset=offset,
        )

    async def update(self, principal: Principal, task_id: str, change: TaskUpdate) -> Task:
        """Change status (along the lifecycle) and result; services and admins only."""
        principal.require("admin", "service")
        task = await self.get(principal, task_id)
        if (
            "result" in change.model_fields_set
            and task.status in _FINAL_RESULTS
            and change.result != task.result
        ):
            raise ConflictError(f"task is {task.status}; its result is final", field="result")
        if change.status is not None:
            check_transition("task", TASK_TRANSITIONS, TaskStatus(task.status), change.status)
            if change.status == TaskStatus.CANCELLED and task.cancelled_at is None:
                task.cancelled_at = utc_now()
            _count_final(task, change.status.value)
            task.status = change.status.value
        if "result" in change.model_fields_set:
            task.result = change.result
        if change.project_status is not None:
            _check_project_back(task)
        task.updated_at = utc_now()
        await self.tasks.flush()
        if change.status in _ENDED:
            await self._ended(task)
        if change.project_status is not None:
            await self._project_back(task, change.project_status)
        return task

    async def _project_back(self, task: Task, target: ProjectStatus) -> None:
        """A task ended: its project goes back to `target` (`TaskUpdate.
        project_status`) unless another engineering task of the project is open or the
        project left its work meanwhile (deploying, failed, archived: it keeps that). Under
        the project's row lock (as `release_turns`), so of two tasks ending at once the
        later one sees the earlier one ended; every step checked against the lifecycle."""
        project = await self.tasks.lock_project(task.project_id)
        if project is None:
            return
        # a statement after the one that took the lock (see `TaskRepository.turns`)
        if await self.tasks.count_open_engineering(task.project_id, besides=task.id):
            return
        current = ProjectStatus(project.status)
        if current not in (ProjectStatus.DEVELOPING, ProjectStatus.TESTING):
            return
        steps = [ProjectStatus.DEVELOPING] if current == ProjectStatus.TESTING else []
        for status in [*steps, target]:
            check_transition("project", PROJECT_TRANSITIONS, current, status)
            current = status
        project.status = current.value
        project.updated_at = utc_now()
        await self.tasks.flush()

    async def cancel(
        self, principal: Principal, task_id: str, *, correlation_id: str | None = None
    ) -> Task:
        """Cancel a queued or running task (its owner, admins, services). The `task_cancelled`
        log line carries the caller's `correlation_id` (the chat turn that asked), else the
        task's own, and the task's as `task_correlation_id`."""
        task = await self.get(principal, task_id)
        if task.status not in (TaskStatus.QUEUED.value, TaskStatus.RUNNING.value):
            raise InvalidTransitionError(
                f"task is {task.status}; only a queued or running task can be cancelled",
                field="status",
            )
        _count_final(task, TaskStatus.CANCELLED.value)
        task.status = TaskStatus.CANCELLED.value
        task.cancelled_at = task.updated_at = utc_now()
        await self.tasks.flush()
        await self._ended(task)
        turn = correlation_id or task.correlation_id
        annotate_current_span(task_id=task.id, correlation_id=turn)
        _log.info(
            "task_cancelled",
            task_id=task.id,
            correlation_id=turn,
            task_correlation_id=task.correlation_id,
            user_id=principal.user_id,
        )
        return task

    async def redrive(self, principal: Principal, task_id: str) -> Task:
        """Publish a queued task's queue message again (services and admins): the same task
        id and correlation id, through the outbox; counted in `redrive_count`."""
        principal.require("admin", "service")
        task = await self.tasks.get_for_update(task_id)
        if task is None:
            raise NotFoundError(f"task {task_id!r} not found")
        if task.status != TaskStatus.QUEUED.value:
            raise ConflictError(
                f"task is {task.status}; only a queued task can be re-driven", field="status"
            )
        task_type = TaskType(task.type)
        stream = _QUEUE_OF.get(task_type)
        if stream is None:
            raise ConflictError(f"a {task.type} task has no queue message", field="type")
        if task.user_id is None:
            raise ConflictError("the task has no user to run it for", field="user_id")
        if task.released_at is None:
            raise ConflictError(
                "the task waits for its turn (an earlier task of the project is open)",
                field="status",
            )
        await self.outbox.add(
            stream, _message(task, task_type, task.user_id), correlation_id=task.correlation_id
        )
        task.redrive_count += 1
        task.redriven_at = utc_now()
        await self.tasks.flush()
        return task

    def deadline_of(self, task: Task) -> datetime:
        """When the task must have ended: its own deadline, or (a task created before
        deadlines existed) its creation plus its type's allowance."""
        if task.deadline_at is not None:
            return task.deadline_at
        return task.created_at + timedelta(seconds=self.deadlines.of(task.type))


def _check_project_back(task: Task) -> None:
    """`project_status` comes only with the end of the task."""
    if TaskStatus(task.status) not in _ENDED:
        raise InvalidRequestError(
            f"the project goes back when its task ends; the task is {task.status}",
            field="project_status",
        )


def _check_create(
    principal: Principal, request: TaskCreate, project: tuple[str, int | None] | None
) -> int | None:
    """The refusals of a create that its project decides, in order (both paths): `project`
    is its (status, owner id), None when there is none. Returns the user the task runs for
    (the project's owner, else the caller)."""
    if project is None or not principal.can_see_owner(project[1]):
        raise NotFoundError(f"project {request.project_id!r} not found", field="project_id")
    status, owner_id = project
    if status == ProjectStatus.ARCHIVED.value:
        raise InvalidRequestError("the project is archived", field="project_id")
    if request.type == TaskType.DEPLOY:
        try:
            commit_of_spec(request.spec)  # `commit <sha>` pins the deploy (shared.deploys)
        except ValueError as error:
            raise InvalidRequestError(str(error), field="spec") from None
    return owner_id if owner_id is not None else principal.user_id


def _no_owner_to_run() -> InvalidRequestError:
    return InvalidRequestError("the project has no owner to run it for", field="project_id")


async def create_task_direct(
    database: Database,
    principal: Principal,
    request: TaskCreate,
    *,
    correlation_id: str | None = None,
    deadlines: TaskDeadlines,
    monthly_budget_usd: float | None = None,
) -> tuple[TaskCreated, bool] | Unavailable:
    """`TaskService.create` on a direct connection (`direct.py`), without a session: the
    same refusals, the same rows (the task, its outbox row when released) and the same task,
    committed here; returned with whether its outbox row was written. `UNAVAILABLE` (nothing
    written) for what it leaves to the session path: an engineering task whose user has a
    monthly cap (the cap's reads), whose project has no owner (the caller's own cap), or that
    gives a turn to tasks waiting for one (`release_turns`); and whenever the direct path
    cannot answer (a busy SQLite, a connection lost before the write, a statement the server
    refused). On PostgreSQL an engineering task is one call of a function
    (`_create_engineering_pg`), the other creates one transaction of a few statements."""
    engineering = request.type == TaskType.ENGINEERING
    stream = _QUEUE_OF.get(request.type)
    pg = database.direct.backend == "postgresql"

    async def work(tx: DirectTransaction) -> tuple[TaskCreated, bool] | Unavailable:
        # no row lock: on PostgreSQL an engineering task is not created here, and SQLite's
        # writers are serialised by its write lock
        found = await tx.fetch_one(CREATE_PROJECT, {"project_id": request.project_id})
        project = None if found is None else (found["status"], found["owner_id"])
        user_id = _check_create(principal, request, project)
        assert found is not None  # else `_check_create` raised
        room = 0
        if engineering and user_id is not None:
            if found["owner_id"] is None:
                return UNAVAILABLE  # the caller's own cap: the session path reads it
            if found["owner_capped"] or monthly_budget_usd is not None:
                return UNAVAILABLE  # a cap to check: the session path reads the month
        if engineering:
            turns = await tx.fetch_one(CREATE_TURNS, {"project_id": found["id"]})
            assert turns is not None
            room = max(1, found["parallel_tasks"]) - int(turns["released_open"] or 0)
            if room > 0 and turns["waiting"]:
                return UNAVAILABLE  # a turn for waiting tasks: `release_turns`, oldest first
        if stream is not None and user_id is None:
            raise _no_owner_to_run()
        task = _new_task(request, correlation_id, deadlines, found["id"], user_id)
        released = stream is not None and user_id is not None and (not engineering or room > 0)
        if released:
            task["released_at"] = task["created_at"]  # its turn (or a deploy): its message now
        if not released:
            await tx.execute(TASK_INSERT, task)
            return TaskCreated.model_validate(task), False
        assert stream is not None
        assert user_id is not None
        message = _message_of(
            task["id"], task["project_id"], task["correlation_id"], request.type, user_id
        )
        row = row_values(stream, message, correlation_id=task["correlation_id"])
        if not pg:  # in process: no round trip to save
            await tx.execute(TASK_INSERT, task)
            await tx.execute(OUTBOX_INSERT, row)
        else:  # one statement, one round trip
            outbox = {f"outbox_{name}": value for name, value in row.items()}
            await tx.execute(TASK_AND_OUTBOX_INSERT, {**task, **outbox})
        return TaskCreated.model_validate(task), True

    created: tuple[TaskCreated, bool] | Unavailable
    if engineering and pg:
        if monthly_budget_usd is not None:
            return UNAVAILABLE  # every user has a cap to check: the session path reads it
        created = await _create_engineering_pg(
            database, principal, request, correlation_id=correlation_id, deadlines=deadlines
        )
    else:
        created = await database.direct.write(work, lock=database.write_lock)
    if not isinstance(created, Unavailable):
        task_type, task_id, correlation = created[0].type, created[0].id, created[0].correlation_id
        SystemMetrics.default().tasks_created.labels(task_type.value).inc()
        annotate_current_span(task_id=task_id, correlation_id=correlation)
    return created


def _new_task(
    request: TaskCreate,
    correlation_id: str | None,
    deadlines: TaskDeadlines,
    project_id: str,
    user_id: int | None,
) -> dict[str, Any]:
    """The columns of a new task of the direct create, created now, not yet released."""
    now = utc_now()
    return {
        "id": new_id(),
        "project_id": project_id,
        "user_id": user_id,
        "type": request.type.value,
        "status": TaskStatus.QUEUED.value,
        "spec": request.spec,
        "correlation_id": correlation_id or new_id(),
        "created_at": now,
        "deadline_at": now + timedelta(seconds=deadlines.of(request.type.value)),
        "redrive_count": 0,
        "released_at": None,
    }


_OWNER_PLACEHOLDER = -1
"""The user id a PostgreSQL engineering create renders its queue message with, before it
knows the project's owner (no user has it)."""


async def _create_engineering_pg(
    database: Database,
    principal: Principal,
    request: TaskCreate,
    *,
    correlation_id: str | None,
    deadlines: TaskDeadlines,
) -> tuple[TaskCreated, bool] | Unavailable:
    """An engineering task's direct create on PostgreSQL in one round trip: one call of
    `create_engineering_task` (migration 0015, `CREATE_ENGINEERING_TASK`), which locks the
    project, counts its turns and writes the task and its outbox row in the transaction of
    the call, or writes nothing and returns the project for the refusals (raised here, as
    `create_task_direct`'s other paths raise them) and for what is left to the session path.

    The queue message is the session path's, byte for byte: rendered here with a placeholder
    for the owner's id, which the function puts in. A lost connection or a cancellation
    during the call propagates: the task may have been created all the same (`direct.py`)."""
    task = _new_task(request, correlation_id, deadlines, request.project_id, None)
    stream = _QUEUE_OF[TaskType.ENGINEERING]
    message = _message_of(
        task["id"], task["project_id"], task["correlation_id"], request.type, _OWNER_PLACEHOLDER
    )
    row = row_values(stream, message, correlation_id=task["correlation_id"])
    # once: the other values are strings in which a quote is escaped, and ids are not -1
    head, tail = row["payload"].split(f'"user_id":{_OWNER_PLACEHOLDER}')
    found = await database.direct.write_one(
        CREATE_ENGINEERING_TASK,
        {
            "project_id": request.project_id,
            "sees_everything": principal.sees_everything,
            "user_id": principal.user_id,
            "task_id": task["id"],
            "spec": task["spec"],
            "correlation_id": task["correlation_id"],
            "created_at": task["created_at"],
            "deadline_at": task["deadline_at"],
            "stream": stream,
            "message_type": row["message_type"],
            "payload_head": f'{head}"user_id":',
            "payload_tail": tail,
            "outbox_created_at": row["created_at"],
            "traceparent": row["traceparent"],
        },
        wrote="task_created",
    )
    if isinstance(found, Unavailable):
        return found
    project = (found["project_status"], found["project_owner_id"])
    task["user_id"] = _check_create(principal, request, project if found["project_found"] else None)
    if task["user_id"] is None:
        raise _no_owner_to_run()
    if not found["task_created"]:
        return UNAVAILABLE  # no owner, a cap, or a turn for waiting tasks: the session path
    if found["task_released"]:
        task["released_at"] = task["created_at"]  # its turn: its message now
    return TaskCreated.model_validate(task), bool(found["task_released"])


async def read_task(database: Database, principal: Principal, task_id: str) -> TaskDTO:
    """`TaskService.read` without a session: one direct read of the task joined with
    its project's owner (`direct.py`), through a session only when the direct path cannot
    answer. The same rule: a task the caller may not see is not found."""
    row = await database.direct.fetch_one(TASK_READ, {"task_id": task_id})
    if isinstance(row, Unavailable):
        async with database.sessionmaker() as session:
            return await TaskService(session).read(principal, task_id)
    found = None if row is None else (row, row.pop("owner_id"))
    return _visible(principal, task_id, found)


def _visible(
    principal: Principal, task_id: str, found: tuple[dict[str, Any], int | None] | None
) -> TaskDTO:
    """The task read as a `TaskDTO` when the caller may see it (its project's owner,
    services, admins); `NotFoundError` otherwise."""
    if found is None or not principal.can_see_owner(found[1]):
        raise NotFoundError(f"task {task_id!r} not found")
    return TaskDTO.model_validate(found[0])


_FINAL_STATUSES = frozenset(
    {TaskStatus.COMPLETED.value, TaskStatus.FAILED.value, TaskStatus.CANCELLED.value}
)


def _count_final(task: Task, status: str) -> None:
    """`orchestrator_tasks_finished_total{type,status}` when a task reaches a final status."""
    if status in _FINAL_STATUSES and task.status != status:
        SystemMetrics.default().tasks_finished.labels(task.type, status).inc()


def _message(task: Task, task_type: TaskType, user_id: int) -> BaseModel:
    """The queue message that starts the task's flow."""
    return _message_of(task.id, task.project_id, task.correlation_id, task_type, user_id)


def _message_of(
    task_id: str, project_id: str, correlation_id: str, task_type: TaskType, user_id: int
) -> BaseModel:
    """The queue message that starts a task's flow, from its fields."""
    fields = {
        "task_id": task_id,
        "project_id": project_id,
        "user_id": user_id,
        "correlation_id": correlation_id,
    }
    if task_type == TaskType.DEPLOY:
        return DeployMessage.model_validate(fields)
    return EngineeringMessage.model_validate(fields)
