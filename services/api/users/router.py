"""HTTP routes of users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from services.api.deps import CallerDep, PageDep, SessionDep
from services.api.users.service import UserService
from shared.api_client.schemas import Page, UserCreate
from shared.contracts import UserDTO

router = APIRouter(prefix="/api/users", tags=["users"])

UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreate, caller: CallerDep, db: SessionDep) -> UserDTO:
    """Create a user (admins only)."""
    caller.require("admin")
    return UserDTO.model_validate(await UserService(db).create(body))


@router.get("")
async def list_users(
    caller: CallerDep,
    db: SessionDep,
    page: PageDep,
    telegram_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> Page[UserDTO]:
    """List users, optionally the one with a Telegram id (admins and services)."""
    caller.require("admin", "service")
    rows, total = await UserService(db).list(
        telegram_id=telegram_id, limit=page.limit, offset=page.offset
    )
    items = [UserDTO.model_validate(row) for row in rows]
    return Page[UserDTO](items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/me")
async def get_me(caller: CallerDep, db: SessionDep) -> UserDTO:
    """The user the credential acts as."""
    return UserDTO.model_validate(await UserService(db).me(caller))


@router.get("/{user_id}")
async def get_user(user_id: UserId, caller: CallerDep, db: SessionDep) -> UserDTO:
    """One user (yourself, or anyone for admins and services)."""
    return UserDTO.model_validate(await UserService(db).get(caller, user_id))
