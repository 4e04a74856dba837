"""All SQL of projects."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.projects.models import Project

__all__ = ["ProjectRepository"]


class ProjectRepository:
    """Projects of one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, project: Project) -> Project:
        """Insert a project."""
        self.session.add(project)
        await self.session.flush()
        return project

    async def get(self, project_id: str) -> Project | None:
        """The project with this id."""
        return await self.session.get(Project, project_id)

    async def list(
        self,
        *,
        status: str | None,
        owner_id: int | None,
        limit: int,
        offset: int,
        archived: bool = True,
    ) -> tuple[Sequence[Project], int]:
        """A page of projects, newest first, and the total count matching the filters
        (without the archived ones when `archived` is false)."""
        query = select(Project)
        if status is not None:
            query = query.where(Project.status == status)
        if not archived:
            query = query.where(Project.status != "archived")
        if owner_id is not None:
            query = query.where(Project.owner_id == owner_id)
        total = await self.session.scalar(select(func.count()).select_from(query.subquery()))
        rows = await self.session.scalars(
            query.order_by(Project.created_at.desc(), Project.id).limit(limit).offset(offset)
        )
        return rows.all(), int(total or 0)

    async def flush(self) -> None:
        """Send pending changes to the database (inside the request's transaction)."""
        await self.session.flush()
