"""All SQL of the outbox."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from pydantic import BaseModel
from sqlalchemy import Row, Table, bindparam, delete, func, insert, null, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.db import utc_now
from services.api.outbox.models import OutboxMessage
from shared import registry
from shared.observability.tracing import current_traceparent

__all__ = [
    "LAG",
    "MARK_ONE_PUBLISHED",
    "OUTBOX_INSERT",
    "OUTBOX_WRITTEN",
    "PENDING",
    "OutboxRepository",
    "PendingRow",
    "row_values",
]

OUTBOX_WRITTEN = "outbox_written"
"""Key in `session.info` telling the request to wake the relay after its commit."""


_OUTBOX = cast(Table, OutboxMessage.__table__)
OUTBOX_COLUMNS = (
    "stream",
    "message_type",
    "payload",
    "correlation_id",
    "created_at",
    "attempts",
    "traceparent",
)
"""The columns a new outbox row is written with (the others keep their defaults)."""
_PENDING = (
    select(
        _OUTBOX.c.id,
        _OUTBOX.c.stream,
        _OUTBOX.c.message_type,
        _OUTBOX.c.payload,
        _OUTBOX.c.correlation_id,
        _OUTBOX.c.traceparent,
        _OUTBOX.c.created_at,
    )
    .where(_OUTBOX.c.published_at.is_(None))
    .order_by(_OUTBOX.c.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_MARK_PUBLISHED = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
    .values(published_at=bindparam("now"), attempts=_OUTBOX.c.attempts + 1, last_error=None)
)
"""The relay's statements, built once."""
PENDING = _PENDING
"""The oldest unpublished rows (bind `limit`), locked where the database can (the relay's
direct batch, `OutboxRelay.publish_pending`)."""
LAG = select(
    func.count(_OUTBOX.c.id).label("waiting"), func.min(_OUTBOX.c.created_at).label("oldest")
).where(_OUTBOX.c.published_at.is_(None))
"""How many rows wait to be published, and when the oldest of them was written."""
MARK_ONE_PUBLISHED = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("row_id", type_=_OUTBOX.c.id.type))
    .values(
        published_at=bindparam("now", type_=_OUTBOX.c.published_at.type),
        attempts=_OUTBOX.c.attempts + 1,
        last_error=null(),
    )
)
"""`_MARK_PUBLISHED` for one row (run for each row of a batch in one round trip,
`DirectTransaction.execute_many`: no list to expand)."""

PendingRow = Row[Any, Any, Any, Any, Any, Any, Any]
"""A pending row as the relay reads it: id, stream, message_type, payload, correlation_id,
traceparent, created_at."""


OUTBOX_INSERT = (
    insert(_OUTBOX)
    .values({name: bindparam(name, type_=_OUTBOX.c[name].type) for name in OUTBOX_COLUMNS})
    .inline()
)
"""An outbox row's insert on the table, with the values of `row_values` (the direct
create, `services/api/direct.py`)."""


def row_values(
    stream: str, message: BaseModel, *, correlation_id: str, now: datetime | None = None
) -> dict[str, Any]:
    """The columns of the outbox row of `message` for `stream` (its type checked against
    the stream's now): what `OutboxRepository.add` and the direct create insert."""
    registry.resolve(stream).check(message)
    return {
        "stream": stream,
        "message_type": registry.message_type_name(type(message)),
        "payload": message.model_dump_json(),
        "correlation_id": correlation_id,
        "created_at": now or utc_now(),
        "attempts": 0,
        "traceparent": current_traceparent(),
    }


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
        row = OutboxMessage(**row_values(stream, message, correlation_id=correlation_id))
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

    async def pending(self, *, limit: int) -> Sequence[PendingRow]:
        """The oldest unpublished rows (what the relay publishes, not ORM objects); locked
        (others skip them) where the database can."""
        return (await self.session.execute(_PENDING, {"limit": limit})).all()

    async def mark_published(self, row_ids: Sequence[int]) -> None:
        """Record that these rows reached their streams (on the table: no ORM objects to
        synchronise, the relay's session ends with the batch)."""
        await self.session.execute(_MARK_PUBLISHED, {"ids": list(row_ids), "now": utc_now()})

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
