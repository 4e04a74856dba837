"""All SQL of tasks."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.projects.models import Project
from services.api.tasks.models import Task

__all__ = ["TaskRepository"]


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
        its tasks' turns; SQLite writers are serialised by the database's write lock)."""
        query = select(Project).where(Project.id == project_id).with_for_update()
        return (await self.session.scalars(query)).first()

    async def open_engineering(self, project_id: str) -> Sequence[Task]:
        """The project's queued and running engineering tasks, oldest first."""
        query = (
            select(Task)
            .where(
                Task.project_id == project_id,
                Task.type == "engineering",
                Task.status.in_(("queued", "running")),
            )
            .order_by(Task.created_at, Task.id)
        )
        return (await self.session.scalars(query)).all()

    async def flush(self) -> None:
        """Send pending changes to the database (inside the request's transaction)."""
        await self.session.flush()
