"""Rules of users: admins create them; a Telegram id belongs to one user."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.api.auth.principal import Principal
from services.api.errors import ConflictError, NotFoundError
from services.api.users.models import User
from services.api.users.repository import UserRepository
from shared.api_client.schemas import UserCreate

__all__ = ["UserService"]


class UserService:
    """Create, find and list users."""

    def __init__(self, session: AsyncSession) -> None:
        self.users = UserRepository(session)

    async def create(self, request: UserCreate) -> User:
        """Create a user; `ConflictError` when the Telegram id is taken."""
        if await self.users.by_telegram_id(request.telegram_id) is not None:
            raise ConflictError(
                f"a user with telegram_id {request.telegram_id} exists", field="telegram_id"
            )
        return await self.users.add(
            User(telegram_id=request.telegram_id, is_admin=request.is_admin)
        )

    async def get(self, principal: Principal, user_id: int) -> User:
        """A user the caller may see (themselves, or anyone for admins and services)."""
        user = await self.users.get(user_id)
        if user is None or not (principal.sees_everything or principal.user_id == user_id):
            raise NotFoundError(f"user {user_id} not found")
        return user

    async def me(self, principal: Principal) -> User:
        """The user the credential acts as."""
        if principal.user_id is None:
            raise NotFoundError("this credential does not act as a user")
        return await self.get(principal, principal.user_id)

    async def list(
        self, *, telegram_id: int | None, limit: int, offset: int
    ) -> tuple[Sequence[User], int]:
        """A page of users."""
        return await self.users.list(telegram_id=telegram_id, limit=limit, offset=offset)
