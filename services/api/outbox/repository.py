"""All SQL of the outbox."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.db import utc_now
from services.api.outbox.models import OutboxMessage
from shared import registry
from shared.observability.tracing import current_traceparent

__all__ = ["OUTBOX_WRITTEN", "OutboxRepository"]

OUTBOX_WRITTEN = "outbox_written"
"""Key in `session.info` telling the request to wake the relay after its commit."""


class OutboxRepository:
    """Outbox rows of one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self, stream: str, message: BaseModel, *, correlation_id: str, flush: bool = True
    ) -> OutboxMessage:
        """Queue `message` for `stream` in the caller's transaction (type checked now);
        `flush=False`: inserted with the session's next flush (one round trip for several
        rows)."""
        registry.resolve(stream).check(message)
        row = OutboxMessage(
            stream=stream,
            message_type=registry.message_type_name(type(message)),
            payload=message.model_dump_json(),
            correlation_id=correlation_id,
            created_at=utc_now(),
            traceparent=current_traceparent(),
        )
        self.session.add(row)
        if flush:
            await self.session.flush()
        self.session.info[OUTBOX_WRITTEN] = True
        return row

    async def lag(self) -> tuple[int, datetime | None]:
        """How many rows wait to be published, and when the oldest of them was written."""
        query = select(func.count(OutboxMessage.id), func.min(OutboxMessage.created_at)).where(
            OutboxMessage.published_at.is_(None)
        )
        count, oldest = (await self.session.execute(query)).one()
        return int(count or 0), oldest

    async def pending(self, *, limit: int) -> Sequence[OutboxMessage]:
        """The oldest unpublished rows; locked (others skip them) where the database can."""
        query = (
            select(OutboxMessage)
            .where(OutboxMessage.published_at.is_(None))
            .order_by(OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return (await self.session.scalars(query)).all()

    async def mark_published(self, row_ids: Sequence[int]) -> None:
        """Record that these rows reached their streams."""
        await self.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(row_ids))
            .values(published_at=utc_now(), attempts=OutboxMessage.attempts + 1, last_error=None)
        )

    async def mark_failed(self, row_id: int, error: str) -> None:
        """Record a failed attempt (the row stays pending)."""
        await self.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == row_id)
            .values(attempts=OutboxMessage.attempts + 1, last_error=error[:500])
        )

    async def purge_published(self, before: datetime) -> int:
        """Delete rows published before `before`; returns how many."""
        result = await self.session.execute(
            delete(OutboxMessage).where(OutboxMessage.published_at < before)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def count_pending(self) -> int:
        """How many rows wait to be published."""
        total = await self.session.scalar(
            select(func.count()).where(OutboxMessage.published_at.is_(None))
        )
        return int(total or 0)
