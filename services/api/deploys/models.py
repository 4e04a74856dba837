"""ORM model of the deploy history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db import Base, utc_now


class Deploy(Base):
    """One deploy task of a project: the commit it deploys and how it ended (one per task)."""

    __tablename__ = "deploys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), unique=True)
    sha: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    url: Mapped[str | None] = mapped_column(Text, default=None)
    previous_serves: Mapped[bool | None] = mapped_column(Boolean, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    health: Mapped[str | None] = mapped_column(String(8), default=None)
    """`up` or `down` as the scheduler's probes last saw the release (None: not probed yet)."""
    health_changed_at: Mapped[datetime | None] = mapped_column(default=None)
    health_changes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """How many times the release went down or came back up (numbers each change, so a
    front door tells its user of each exactly once)."""
    restarts: Mapped[int | None] = mapped_column(Integer, default=None)
    """Restarts of the release by the server's supervisor (None: not known)."""
