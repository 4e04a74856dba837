"""HTTP routes of API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from services.api.auth.service import AuthService
from services.api.deps import CallerDep, PageDep, SessionDep
from shared.api_client.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyDTO, Page

router = APIRouter(prefix="/api/keys", tags=["keys"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_key(body: ApiKeyCreate, caller: CallerDep, db: SessionDep) -> ApiKeyCreated:
    """Create a key; the secret is in this response only. Users create their own tokens."""
    row, secret = await AuthService(db).create(caller, body)
    return ApiKeyCreated.model_validate(
        {**ApiKeyDTO.model_validate(row).model_dump(), "key": secret}
    )


@router.get("")
async def list_keys(caller: CallerDep, db: SessionDep, page: PageDep) -> Page[ApiKeyDTO]:
    """List keys, never their secrets (admins only)."""
    caller.require("admin")
    rows, total = await AuthService(db).list(limit=page.limit, offset=page.offset)
    items = [ApiKeyDTO.model_validate(row) for row in rows]
    return Page[ApiKeyDTO](items=items, total=total, limit=page.limit, offset=page.offset)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_key(
    key_id: Annotated[int, Path(ge=1, le=2**31 - 1)], caller: CallerDep, db: SessionDep
) -> None:
    """Revoke a key (admins any, services user tokens); it stops working at once."""
    await AuthService(db).revoke(key_id, caller)
