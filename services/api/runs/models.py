"""ORM model of agent runs: one row per agent run of a task."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db import Base, utc_now


class AgentRun(Base):
    """What one agent run of a task did and cost (`POST /api/tasks/{id}/runs`).

    `project_id` and `user_id` are copied from the task when the run is recorded, so usage
    sums (`GET /api/usage`) need no join and survive a task's owner change."""

    __tablename__ = "agent_runs"
    __table_args__ = (UniqueConstraint("task_id", "run_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(String(36), index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, index=True, default=None)
    run_key: Mapped[str | None] = mapped_column(String(255), default=None)
    """The run's stable name (the step command's request id): one row per key and task."""
    step: Mapped[str] = mapped_column(String(64))
    agent: Mapped[str] = mapped_column(String(64))
    agent_version: Mapped[str | None] = mapped_column(String(200), default=None)
    model: Mapped[str | None] = mapped_column(String(200), default=None)
    status: Mapped[str] = mapped_column(String(16))
    prompt_chars: Mapped[int] = mapped_column(Integer, default=0)
    answer: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    tools: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    tools_dropped: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
