"""All SQL of project secrets."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.secrets.models import ProjectSecret

__all__ = ["SecretRepository"]


class SecretRepository:
    """Project secrets of one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, project_id: str, name: str) -> ProjectSecret | None:
        """The secret `name` of a project."""
        return await self.session.scalar(
            select(ProjectSecret).where(
                ProjectSecret.project_id == project_id, ProjectSecret.name == name
            )
        )

    async def of_project(self, project_id: str) -> Sequence[ProjectSecret]:
        """A project's secrets, by name."""
        rows = await self.session.scalars(
            select(ProjectSecret)
            .where(ProjectSecret.project_id == project_id)
            .order_by(ProjectSecret.name)
        )
        return rows.all()

    async def every(self) -> Sequence[ProjectSecret]:
        """Every stored secret (key rotation)."""
        return (await self.session.scalars(select(ProjectSecret).order_by(ProjectSecret.id))).all()

    async def add(self, secret: ProjectSecret) -> ProjectSecret:
        """Insert a secret."""
        self.session.add(secret)
        await self.session.flush()
        return secret

    async def delete(self, secret: ProjectSecret) -> None:
        """Remove a secret."""
        await self.session.delete(secret)
        await self.session.flush()

    async def flush(self) -> None:
        """Send pending changes to the database (inside the request's transaction)."""
        await self.session.flush()
