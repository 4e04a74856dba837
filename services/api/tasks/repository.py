"""All SQL of tasks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    DateTime,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    column,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

from services.api.outbox.models import OutboxMessage
from services.api.outbox.repository import OUTBOX_COLUMNS
from services.api.projects.models import Project
from services.api.tasks.models import Task
from services.api.users.models import User
from shared.contracts import TaskDTO

__all__ = [
    "CREATE_ENGINEERING_TASK",
    "CREATE_PROJECT",
    "CREATE_TURNS",
    "TASK_AND_OUTBOX_INSERT",
    "TASK_INSERT",
    "TASK_READ",
    "TaskRepository",
]

_OPEN = ("queued", "running")

_TASKS = Task.__table__
_PROJECTS = Project.__table__
TASK_READ = (
    select(*(_TASKS.c[name] for name in TaskDTO.model_fields), _PROJECTS.c.owner_id)
    .select_from(_TASKS.join(_PROJECTS, _PROJECTS.c.id == _TASKS.c.project_id))
    .where(_TASKS.c.id == bindparam("task_id"))
)
"""A task's `TaskDTO` columns and its project's owner, on the tables (not the ORM)."""


_PROJECT = (
    select(Project, User.monthly_budget_usd)
    .outerjoin(User, User.id == Project.owner_id)
    .where(Project.id == bindparam("project_id"))
)
"""A create's project with its owner's own monthly cap (built once, not per request)."""
_PROJECT_LOCKED = _PROJECT.with_for_update(key_share=True, of=Project)
_TURNS = select(
    select(func.count())
    .select_from(_TASKS)
    .where(
        _TASKS.c.status.in_(_OPEN),
        _TASKS.c.project_id == bindparam("project_id"),
        _TASKS.c.type == "engineering",
        _TASKS.c.released_at.is_not(None),
    )
    .scalar_subquery(),
    select(_TASKS.c.id)
    .where(
        _TASKS.c.status == "queued",
        _TASKS.c.project_id == bindparam("project_id"),
        _TASKS.c.type == "engineering",
        _TASKS.c.released_at.is_(None),
        _TASKS.c.user_id.is_not(None),
    )
    .exists(),
)
"""A project's engineering turns in use, and whether a task waits for one. `count(*)`, not
of a column: both read the index `ix_tasks_turns` alone (migration 0014), not each task's
row (SQLite: 0.09 instead of 0.44 ms with 2,000 open released tasks)."""


_USERS = User.__table__
CREATE_PROJECT = (
    select(
        _PROJECTS.c.id,
        _PROJECTS.c.status,
        _PROJECTS.c.owner_id,
        _PROJECTS.c.parallel_tasks,
        _USERS.c.monthly_budget_usd.is_not(None).label("owner_capped"),
    )
    .select_from(_PROJECTS.outerjoin(_USERS, _USERS.c.id == _PROJECTS.c.owner_id))
    .where(_PROJECTS.c.id == bindparam("project_id"))
)
"""The direct create's project (the columns it needs) and whether its owner has a monthly
cap of their own."""
CREATE_TURNS = select(
    select(func.count())
    .select_from(_TASKS)
    .where(
        or_(*(_TASKS.c.status == status for status in _OPEN)),
        _TASKS.c.project_id == bindparam("project_id"),
        _TASKS.c.type == "engineering",
        _TASKS.c.released_at.is_not(None),
    )
    .scalar_subquery()
    .label("released_open"),
    _TURNS.selected_columns[1].label("waiting"),
)
"""`TaskRepository.turns` with named columns and no `IN` list (the direct create's
statements are compiled once, with their constants)."""
_TASK_COLUMNS = (
    "id",
    "project_id",
    "user_id",
    "type",
    "status",
    "spec",
    "correlation_id",
    "created_at",
    "deadline_at",
    "redrive_count",
)
TASK_INSERT = (
    insert(cast(Table, _TASKS))
    .values(
        {
            name: bindparam(name, type_=_TASKS.c[name].type)
            for name in (*_TASK_COLUMNS, "released_at")
        }
    )
    .inline()
)
"""A new task's insert on the table (the direct create; the other columns NULL)."""
_OUTBOX = cast(Table, OutboxMessage.__table__)
TASK_AND_OUTBOX_INSERT = (
    insert(_OUTBOX)
    .values(
        {name: bindparam(f"outbox_{name}", type_=_OUTBOX.c[name].type) for name in OUTBOX_COLUMNS}
    )
    .inline()
    .add_cte(TASK_INSERT.cte("new_task"))
)
"""PostgreSQL: `TASK_INSERT` and the task's outbox row in one statement (a data-modifying
`WITH`), one round trip instead of two; the outbox row's values are bound as `outbox_<column>`
(`services.api.outbox.repository.row_values`)."""

_CREATE_ENGINEERING_ARGS: tuple[tuple[str, TypeEngine[Any]], ...] = (
    ("project_id", String()),
    ("sees_everything", Boolean()),
    ("user_id", Integer()),
    ("task_id", String()),
    ("spec", Text()),
    ("correlation_id", String()),
    ("created_at", DateTime(timezone=True)),
    ("deadline_at", DateTime(timezone=True)),
    ("stream", String()),
    ("message_type", String()),
    ("payload_head", Text()),
    ("payload_tail", Text()),
    ("outbox_created_at", DateTime(timezone=True)),
    ("traceparent", String()),
)
CREATE_ENGINEERING_TASK = select(
    *func.create_engineering_task(
        *(bindparam(name, type_=type_) for name, type_ in _CREATE_ENGINEERING_ARGS)
    )
    .table_valued(
        column("project_found", Boolean),
        column("project_status", String),
        column("project_owner_id", Integer),
        column("project_parallel_tasks", Integer),
        column("owner_capped", Boolean),
        column("released_open", Integer),
        column("waiting", Boolean),
        column("task_created", Boolean),
        column("task_released", Boolean),
    )
    .c
)
"""PostgreSQL, an engineering task's create in one call of the function of migration 0015:
the project locked (as `TaskRepository.lock_project`) and read (`CREATE_PROJECT`), its
turns (`CREATE_TURNS`), the task and its outbox row written unless the project, the caller
(bind `sees_everything` and `user_id`, `Principal.can_see_owner`) or the turns leave it to
the session path; returns the project, the turns and what was written. The outbox payload
is bound in two parts, around the owner's id (`payload_head`, `payload_tail`)."""


class TaskRepository:
    """Tasks of one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, task: Task) -> Task:
        """Insert a task."""
        self.session.add(task)
        await self.session.flush()
        return task

    async def get_with_owner(self, task_id: str) -> tuple[Task, int | None] | None:
        """The task and its project's owner id, in one query."""
        row = (
            await self.session.execute(
                select(Task, Project.owner_id)
                .join(Project, Project.id == Task.project_id)
                .where(Task.id == task_id)
            )
        ).first()
        return None if row is None else (row[0], row[1])

    async def read(self, task_id: str) -> tuple[dict[str, Any], int | None] | None:
        """The task's `TaskDTO` fields and its project's owner id, in one Core query (no ORM
        object, no identity map): the cheap read of `GET /api/tasks/{id}`."""
        connection = await self.session.connection()
        row = (await connection.execute(TASK_READ, {"task_id": task_id})).first()
        if row is None:
            return None
        fields = row._asdict()
        return fields, fields.pop("owner_id")

    async def get_for_update(self, task_id: str) -> Task | None:
        """The task, its row locked until the transaction ends (PostgreSQL; SQLite writers
        are serialised by the database's write lock)."""
        query = select(Task).where(Task.id == task_id).with_for_update()
        return (await self.session.scalars(query)).first()

    async def list(
        self,
        *,
        status: str | None,
        project_id: str | None,
        owner_id: int | None,
        task_type: str | None,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[Task], int]:
        """A page of tasks, newest first, and the total count matching the filters."""
        query = select(Task)
        if owner_id is not None:
            query = query.join(Project, Project.id == Task.project_id).where(
                Project.owner_id == owner_id
            )
        if status is not None:
            query = query.where(Task.status == status)
        if project_id is not None:
            query = query.where(Task.project_id == project_id)
        if task_type is not None:
            query = query.where(Task.type == task_type)
        total = await self.session.scalar(select(func.count()).select_from(query.subquery()))
        rows = await self.session.scalars(
            query.order_by(Task.created_at.desc(), Task.id).limit(limit).offset(offset)
        )
        return rows.all(), int(total or 0)

    async def lock_project(self, project_id: str) -> Project | None:
        """The project, its row locked until the transaction ends (serialises the release of
        its tasks' turns; SQLite writers are serialised by the database's write lock).

        PostgreSQL: `FOR NO KEY UPDATE`, which does not conflict with the `KEY SHARE` lock a
        task insert takes on its project (the foreign key): with `FOR UPDATE`, two concurrent
        creates of one project each held `KEY SHARE` and waited for the other (deadlock)."""
        query = select(Project).where(Project.id == project_id).with_for_update(key_share=True)
        return (await self.session.scalars(query)).first()

    async def project_for_create(
        self, project_id: str, *, lock: bool
    ) -> tuple[Project, float | None] | None:
        """The project and its owner's own monthly cap, in one query; its row locked until
        the transaction ends when `lock` (as `lock_project`)."""
        query = _PROJECT_LOCKED if lock else _PROJECT
        row = (await self.session.execute(query, {"project_id": project_id})).first()
        return None if row is None else (row[0], row[1])

    async def turns(self, project_id: str) -> tuple[int, bool]:
        """In one query: how many of the project's engineering turns are in use
        (`count_released_open`) and whether an engineering task waits for one
        (`waiting_engineering`). Under the project's lock, in a statement after the one
        that took it: on PostgreSQL a statement sees the commits from before its start,
        so the counts must not be read by the statement that waited for the lock."""
        row = (await self.session.execute(_TURNS, {"project_id": project_id})).one()
        return int(row[0] or 0), bool(row[1])

    async def count_released_open(self, project_id: str) -> int:
        """How many of the project's engineering tasks are open (queued or running) with
        their queue message released: the turns in use."""
        query = (
            select(func.count())
            .select_from(Task)
            .where(
                Task.status.in_(_OPEN),
                Task.project_id == project_id,
                Task.type == "engineering",
                Task.released_at.is_not(None),
            )
        )
        return int(await self.session.scalar(query) or 0)

    async def count_open_engineering(self, project_id: str, *, besides: str) -> int:
        """How many of the project's engineering tasks other than `besides` are open
        (queued, waiting for their turn or not, or running)."""
        query = select(func.count(Task.id)).where(
            Task.status.in_(_OPEN),
            Task.project_id == project_id,
            Task.type == "engineering",
            Task.id != besides,
        )
        return int(await self.session.scalar(query) or 0)

    async def waiting_engineering(self, project_id: str, *, limit: int) -> Sequence[Task]:
        """The project's oldest `limit` engineering tasks waiting for their turn (queued, not
        released, with an owner to run them for), oldest first. Reads only open tasks (the
        index on status and creation), however many finished ones the project has."""
        query = (
            select(Task)
            .where(
                Task.status == "queued",
                Task.project_id == project_id,
                Task.type == "engineering",
                Task.released_at.is_(None),
                Task.user_id.is_not(None),
            )
            .order_by(Task.created_at, Task.id)
            .limit(limit)
        )
        return (await self.session.scalars(query)).all()

    async def flush(self) -> None:
        """Send pending changes to the database (inside the request's transaction)."""
        await self.session.flush()
