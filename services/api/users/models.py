"""ORM model of users."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Float, Integer
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db import Base, utc_now


class User(Base):
    """A person who talks to the system; admins see and change everything."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    monthly_budget_usd: Mapped[float | None] = mapped_column(Float, default=None)
    """The user's own cap on a calendar month's agent spend; None: the system's default."""
