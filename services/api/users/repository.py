"""All SQL of users."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.users.models import User

__all__ = ["UserRepository"]


class UserRepository:
    """Users of one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, user: User) -> User:
        """Insert a user and return it with its id."""
        self.session.add(user)
        await self.session.flush()
        return user

    async def get(self, user_id: int) -> User | None:
        """The user with this id."""
        return await self.session.get(User, user_id)

    async def by_telegram_id(self, telegram_id: int) -> User | None:
        """The user with this Telegram id."""
        found = await self.session.scalars(select(User).where(User.telegram_id == telegram_id))
        return found.first()

    async def list(
        self, *, telegram_id: int | None, limit: int, offset: int
    ) -> tuple[Sequence[User], int]:
        """A page of users (optionally the one with a Telegram id) and the total count."""
        query = select(User)
        if telegram_id is not None:
            query = query.where(User.telegram_id == telegram_id)
        total = await self.session.scalar(select(func.count()).select_from(query.subquery()))
        rows = await self.session.scalars(query.order_by(User.id).limit(limit).offset(offset))
        return rows.all(), int(total or 0)
