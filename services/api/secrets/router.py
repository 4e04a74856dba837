"""HTTP routes of project secrets (under `/api/projects/{id}/secrets`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, status

from services.api.deps import CallerDep, SessionDep
from services.api.secrets.service import SecretService
from shared.api_client.schemas import SECRET_NAME_PATTERN, SealedSecrets, SecretInfo, SecretValue
from shared.api_client.text import Identifier

router = APIRouter(prefix="/api/projects", tags=["secrets"])

SecretName = Annotated[
    str,
    Path(
        pattern=SECRET_NAME_PATTERN,
        description="The environment variable the project reads the secret from.",
    ),
]


async def secret_service(request: Request, db: SessionDep) -> SecretService:
    """The request's secret service (with the app's secret box)."""
    return SecretService(db, request.app.state.secret_box)


SecretsDep = Annotated[SecretService, Depends(secret_service)]


@router.get("/{project_id}/secrets")
async def list_secrets(
    project_id: Identifier, caller: CallerDep, secrets: SecretsDep
) -> list[SecretInfo]:
    """The names of a project's secrets (and when they were set); never their values."""
    return [SecretInfo.model_validate(row) for row in await secrets.list(caller, project_id)]


@router.put("/{project_id}/secrets/{name}")
async def put_secret(
    project_id: Identifier,
    name: SecretName,
    body: SecretValue,
    caller: CallerDep,
    secrets: SecretsDep,
) -> SecretInfo:
    """Set a secret (stored encrypted; a deploy hands it to the project's environment)."""
    row = await secrets.put(caller, project_id, name, body.value.get_secret_value())
    return SecretInfo.model_validate(row)


@router.delete("/{project_id}/secrets/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_secret(
    project_id: Identifier, name: SecretName, caller: CallerDep, secrets: SecretsDep
) -> None:
    """Remove a secret (the next deploy runs without it)."""
    await secrets.delete(caller, project_id, name)


@router.get("/{project_id}/secrets-sealed")
async def sealed_secrets(
    project_id: Identifier, caller: CallerDep, secrets: SecretsDep
) -> SealedSecrets:
    """A project's secrets encrypted as stored (service credentials: infra-service, which
    holds the key, resolves them for a deploy). No route returns a value in the clear."""
    return SealedSecrets(project_id=project_id, sealed=await secrets.sealed(caller, project_id))
