"""Rules of project secrets: the project's owner (or an admin) sets, lists and removes them;
values are sealed before they reach the database and no read returns one; the sealed form
goes only to service credentials (infra-service, which holds the key, for a deploy)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.api.auth.principal import Principal
from services.api.db import utc_now
from services.api.errors import ApiError, NotFoundError
from services.api.projects.service import ProjectService
from services.api.secrets.models import ProjectSecret
from services.api.secrets.repository import SecretRepository
from shared.secret_box import SecretBox

__all__ = ["SecretService", "SecretsUnavailableError", "rotate_all"]


class SecretsUnavailableError(ApiError):
    """The API was started without an encryption key for project secrets."""

    status_code = 503
    code = "secrets_unavailable"


class SecretService:
    """Set, list, remove and (sealed, for services) hand out a project's secrets."""

    def __init__(self, session: AsyncSession, box: SecretBox | None) -> None:
        self.projects = ProjectService(session)
        self.secrets = SecretRepository(session)
        self.box = box

    async def put(
        self, principal: Principal, project_id: str, name: str, value: str
    ) -> ProjectSecret:
        """Store (or replace) a secret, sealed."""
        if self.box is None:
            raise SecretsUnavailableError("project secrets are not configured on this API")
        project = await self.projects.get(principal, project_id)
        sealed = self.box.seal(value)
        now = utc_now()
        secret = await self.secrets.get(project.id, name)
        if secret is None:
            secret = ProjectSecret(
                project_id=project.id, name=name, sealed=sealed, created_at=now, updated_at=now
            )
            return await self.secrets.add(secret)
        secret.sealed = sealed
        secret.updated_at = now
        await self.secrets.flush()
        return secret

    async def list(self, principal: Principal, project_id: str) -> Sequence[ProjectSecret]:
        """A project's secrets (the caller shows names and dates only)."""
        project = await self.projects.get(principal, project_id)
        return await self.secrets.of_project(project.id)

    async def delete(self, principal: Principal, project_id: str, name: str) -> None:
        """Remove a secret; `NotFoundError` when the project has none of this name."""
        project = await self.projects.get(principal, project_id)
        secret = await self.secrets.get(project.id, name)
        if secret is None:
            raise NotFoundError(f"project {project_id!r} has no secret {name!r}")
        await self.secrets.delete(secret)

    async def sealed(self, principal: Principal, project_id: str) -> dict[str, str]:
        """A project's secrets as stored (service credentials only: infra-service)."""
        principal.require("service")
        project = await self.projects.get(principal, project_id)
        return {row.name: row.sealed for row in await self.secrets.of_project(project.id)}


async def rotate_all(session: AsyncSession, box: SecretBox) -> int:
    """Re-encrypt every stored secret under the box's first key; how many were rotated.
    `SecretBoxError` (naming the project and secret) when one opens with no key of the box:
    nothing is changed then (the caller rolls back)."""
    rows = await SecretRepository(session).every()
    for row in rows:
        row.sealed = box.rotate(row.sealed, name=f"secret {row.name} of project {row.project_id}")
    await session.flush()
    return len(rows)
