"""ORM model of projects."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db import Base, utc_now


class Project(Base):
    """A project; `status` holds a `ProjectStatus` value."""

    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    status: Mapped[str] = mapped_column(String(32), index=True)
    repository_url: Mapped[str | None] = mapped_column(Text, default=None)
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True, default=None
    )
    modules_text: Mapped[str] = mapped_column("modules", Text, default="backend")
    """The project's modules, comma-separated (`backend`, `telegram`)."""
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime | None] = mapped_column(default=None)
    parallel_tasks: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    """How many engineering tasks of the project may run at once (task order)."""

    @property
    def modules(self) -> list[str]:
        """The project's modules, in order."""
        return [name for name in (self.modules_text or "backend").split(",") if name]
