"""Monthly caps on what a user's agent runs cost (see `services.api.runs.service`)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.errors import ConflictError
from services.api.runs.models import AgentRun
from services.api.users.models import User

__all__ = ["BudgetExceededError", "check_month_cap", "month_spend", "month_start", "user_cap"]


class BudgetExceededError(ConflictError):
    """The user's monthly cap is reached: no new task runs an agent for them this month."""

    code = "budget_exceeded"


def month_start(now: datetime | None = None) -> datetime:
    """The first instant of the calendar month (UTC) of `now`."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def month_spend(session: AsyncSession, user_id: int) -> float:
    """What the user's agent runs cost this calendar month."""
    total = await session.scalar(
        select(func.coalesce(func.sum(AgentRun.cost_usd), 0.0)).where(
            AgentRun.user_id == user_id, AgentRun.created_at >= month_start()
        )
    )
    return float(total or 0.0)


async def user_cap(session: AsyncSession, user_id: int, default: float | None) -> float | None:
    """The monthly cap that applies to a user: their own, else the default."""
    own = await session.scalar(select(User.monthly_budget_usd).where(User.id == user_id))
    return own if own is not None else default


async def check_month_cap(session: AsyncSession, user_id: int, default: float | None) -> None:
    """Raise `BudgetExceededError` when the user's month spend has reached their cap."""
    cap = await user_cap(session, user_id, default)
    if cap is None:
        return
    spent = await month_spend(session, user_id)
    if spent >= cap:
        raise BudgetExceededError(
            f"budget exceeded: user {user_id} month {spent:.4f}/{cap:.4f} USD; "
            "no new task runs an agent for this user before next month "
            "(an admin can raise the cap)",
            field="project_id",
        )
