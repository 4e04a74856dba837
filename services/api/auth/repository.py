"""All SQL of API keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.auth.models import ApiKey

__all__ = ["ApiKeyRepository"]


class ApiKeyRepository:
    """API keys of one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, key: ApiKey) -> ApiKey:
        """Insert a key and return it with its id."""
        self.session.add(key)
        await self.session.flush()
        return key

    async def by_hash(self, key_hash: str) -> ApiKey | None:
        """The key (revoked or not) whose secret hashes to `key_hash`."""
        found = await self.session.scalars(select(ApiKey).where(ApiKey.key_hash == key_hash))
        return found.first()

    async def get(self, key_id: int) -> ApiKey | None:
        """The key with this id."""
        return await self.session.get(ApiKey, key_id)

    async def list(self, *, limit: int, offset: int) -> tuple[Sequence[ApiKey], int]:
        """A page of keys, oldest first, and the total count."""
        total = await self.session.scalar(select(func.count()).select_from(ApiKey))
        rows = await self.session.scalars(
            select(ApiKey).order_by(ApiKey.id).limit(limit).offset(offset)
        )
        return rows.all(), int(total or 0)

    async def revoke(self, key: ApiKey, when: datetime) -> int:
        """Mark a key revoked, with every key it minted, and theirs; the number revoked."""
        revoked = 0
        level = [key]
        while level:
            for row in level:
                if row.revoked_at is None:
                    row.revoked_at = when
                    revoked += 1
            minted = await self.session.scalars(
                select(ApiKey).where(ApiKey.parent_id.in_([row.id for row in level]))
            )
            level = list(minted.all())
        await self.session.flush()
        return revoked
