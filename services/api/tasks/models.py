"""ORM model of tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db import Base, utc_now


class Task(Base):
    """A task of a project; `cancelled_at` is the cancellation record the orchestrator reads.

    `deadline_at` is when it must have ended (set at creation from the type's allowance; NULL
    for tasks created before deadlines existed); `redrive_count` and `redriven_at` record how
    often, and when last, its queue message was published again (`POST .../redrive`)."""

    __tablename__ = "tasks"
    __table_args__ = (
        # the polls' orders (migration 0008)
        Index("ix_tasks_status_created_at", "status", "created_at"),
        Index("ix_tasks_project_id_created_at", "project_id", "created_at"),
        # a create's reads of open tasks, by project and by user (migration 0013)
        Index("ix_tasks_status_project_id_created_at", "status", "project_id", "created_at"),
        Index("ix_tasks_user_id_status", "user_id", "status"),
        # a create's turns, counted in the index alone (migration 0014)
        Index("ix_tasks_turns", "status", "project_id", "type", "released_at", "user_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True, default=None
    )
    type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), index=True)
    spec: Mapped[str | None] = mapped_column(Text, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    correlation_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    updated_at: Mapped[datetime | None] = mapped_column(default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)
    deadline_at: Mapped[datetime | None] = mapped_column(default=None)
    redrive_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    redriven_at: Mapped[datetime | None] = mapped_column(default=None)
    released_at: Mapped[datetime | None] = mapped_column(default=None)
    """When its queue message joined the outbox; NULL while an engineering task waits for
    its turn (task order, `TaskService.release_turns`)."""
    budget_hold_usd: Mapped[float | None] = mapped_column(Float, default=None)
    """The part of its user's monthly cap the task holds while open (`POST
    /api/tasks/{id}/budget-hold`, when its worker starts; migration 0012); NULL: none."""
