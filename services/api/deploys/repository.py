"""All SQL of the deploy history."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.deploys.models import Deploy
from services.api.projects.models import Project

__all__ = ["DeployRepository"]


class DeployRepository:
    """Deploys of one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, deploy: Deploy) -> Deploy:
        """Insert a deploy."""
        self.session.add(deploy)
        await self.session.flush()
        return deploy

    async def of_task(self, task_id: str) -> Deploy | None:
        """The deploy of a task."""
        return await self.session.scalar(select(Deploy).where(Deploy.task_id == task_id))

    async def list(
        self, project_id: str, *, outcome: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Deploy], int]:
        """A page of a project's deploys, newest first, and how many there are."""
        query = select(Deploy).where(Deploy.project_id == project_id)
        if outcome is not None:
            query = query.where(Deploy.outcome == outcome)
        total = await self.session.scalar(select(func.count()).select_from(query.subquery()))
        rows = await self.session.scalars(
            query.order_by(Deploy.created_at.desc(), Deploy.id.desc()).limit(limit).offset(offset)
        )
        return rows.all(), int(total or 0)

    async def flush(self) -> None:
        """Send pending changes to the database (inside the request's transaction)."""
        await self.session.flush()

    async def latest_of(
        self, project_ids: Sequence[str], *, outcome: str | None = None
    ) -> dict[str, Deploy]:
        """The newest deploy (of `outcome`, if given) of each of `project_ids`, by project id:
        two queries for a whole page of projects (the web console's project list)."""
        if not project_ids:
            return {}
        newest = select(func.max(Deploy.id)).where(Deploy.project_id.in_(project_ids))
        if outcome is not None:
            newest = newest.where(Deploy.outcome == outcome)
        rows = await self.session.scalars(
            select(Deploy).where(Deploy.id.in_(newest.group_by(Deploy.project_id)))
        )
        return {deploy.project_id: deploy for deploy in rows.all()}

    async def current(
        self, *, owner_id: int | None, limit: int, offset: int
    ) -> tuple[Sequence[Deploy], int]:
        """The release each `active` project serves (its newest succeeded deploy), oldest
        project first, optionally of one owner's projects only, and how many there are."""
        newest = (
            select(func.max(Deploy.id))
            .where(Deploy.outcome == "succeeded")
            .group_by(Deploy.project_id)
        )
        query = (
            select(Deploy)
            .join(Project, Project.id == Deploy.project_id)
            .where(Deploy.id.in_(newest), Project.status == "active")
        )
        if owner_id is not None:
            query = query.where(Project.owner_id == owner_id)
        total = await self.session.scalar(select(func.count()).select_from(query.subquery()))
        rows = await self.session.scalars(query.order_by(Deploy.id).limit(limit).offset(offset))
        return rows.all(), int(total or 0)
