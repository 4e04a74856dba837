"""ORM models of servers and port allocations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db import Base, utc_now


class Server(Base):
    """A deploy target; `allocation_seq` is bumped to serialise allocations on it."""

    __tablename__ = "servers"

    handle: Mapped[str] = mapped_column(String(100), primary_key=True)
    address: Mapped[str] = mapped_column(Text)
    ssh_user: Mapped[str] = mapped_column(Text)
    credentials_ref: Mapped[str | None] = mapped_column(Text, default=None)
    status: Mapped[str] = mapped_column(String(32), index=True)
    port_range_start: Mapped[int] = mapped_column(Integer)
    port_range_end: Mapped[int] = mapped_column(Integer)
    allocation_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime | None] = mapped_column(default=None)


class PortAllocation(Base):
    """A project's port on a server: one per project per server, one project per port."""

    __tablename__ = "port_allocations"
    __table_args__ = (
        UniqueConstraint("server_handle", "port"),
        UniqueConstraint("server_handle", "project_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    server_handle: Mapped[str] = mapped_column(ForeignKey("servers.handle", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    port: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
