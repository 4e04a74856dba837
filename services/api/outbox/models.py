"""ORM model of outbox rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db import Base, utc_now


class OutboxMessage(Base):
    """A message waiting to be published on `stream`; `published_at` is set once it was."""

    __tablename__ = "outbox"
    __table_args__ = (
        # only the rows waiting to be published (migration 0008)
        Index(
            "ix_outbox_pending",
            "id",
            sqlite_where=text("published_at IS NULL"),
            postgresql_where=text("published_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    stream: Mapped[str] = mapped_column(String(200))
    message_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[str] = mapped_column(Text)
    """The message as JSON (validated again by its type before publishing)."""
    correlation_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    published_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    traceparent: Mapped[str | None] = mapped_column(String(64), default=None)
    """The W3C trace context of the request that wrote the row (empty when not traced): the
    relay publishes the message in that trace."""
