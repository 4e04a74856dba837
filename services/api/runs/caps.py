"""Monthly caps on what a user's agent runs cost (see `services.api.runs.service`).

Holds make the cap hold under concurrency: a task whose agent is about to start holds a part
of its user's remaining month budget (`hold_month_budget`), under a lock on the user's row
(PostgreSQL; SQLite serialises writers). An open task's hold counts, less what its runs
recorded so far, against its user's cap until the task ends: a second task that finds the
budget spent or held is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.errors import ConflictError
from services.api.runs.models import AgentRun
from services.api.tasks.models import Task
from services.api.users.models import User
from shared.api_client.schemas import BudgetHold

__all__ = [
    "BudgetExceededError",
    "check_cap",
    "check_month_cap",
    "held_usd",
    "hold_month_budget",
    "month_spend",
    "month_start",
    "user_cap",
]

_OPEN = ("queued", "running")


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


async def held_usd(session: AsyncSession, user_id: int, *, besides: str | None = None) -> float:
    """What the user's open tasks (but `besides`) hold of the month's budget and have not
    spent yet: each hold less its task's runs of the month."""
    holds = dict(
        (
            await session.execute(
                select(Task.id, Task.budget_hold_usd).where(
                    Task.user_id == user_id,
                    Task.status.in_(_OPEN),
                    Task.budget_hold_usd.is_not(None),
                    Task.id != (besides or ""),
                )
            )
        ).all()
    )
    if not holds:
        return 0.0
    spent = dict(
        (
            await session.execute(
                select(AgentRun.task_id, func.sum(AgentRun.cost_usd))
                .where(AgentRun.task_id.in_(list(holds)), AgentRun.created_at >= month_start())
                .group_by(AgentRun.task_id)
            )
        ).all()
    )
    left = (float(hold or 0.0) - float(spent.get(task) or 0.0) for task, hold in holds.items())
    return sum(max(amount, 0.0) for amount in left)


def _exceeded(user_id: int, spent: float, held: float, cap: float) -> BudgetExceededError:
    of_it = f" ({held:.4f} of it held by the user's running tasks)" if held > 0 else ""
    return BudgetExceededError(
        f"budget exceeded: user {user_id} month {spent + held:.4f}/{cap:.4f} USD{of_it}; "
        "no new task runs an agent for this user before next month "
        "(an admin can raise the cap)",
        field="project_id",
    )


async def check_month_cap(session: AsyncSession, user_id: int, default: float | None) -> None:
    """Raise `BudgetExceededError` when the user's month spend, with what their running
    tasks hold, has reached their cap."""
    await check_cap(session, user_id, await user_cap(session, user_id, default))


async def check_cap(session: AsyncSession, user_id: int, cap: float | None) -> None:
    """`check_month_cap` with the cap that applies to the user already known (None: no
    cap, nothing to read)."""
    if cap is None:
        return
    spent = await month_spend(session, user_id)
    held = await held_usd(session, user_id)
    if spent + held >= cap:
        raise _exceeded(user_id, spent, held, cap)


async def hold_month_budget(
    session: AsyncSession, task: Task, default: float | None, hold_usd: float | None
) -> BudgetHold:
    """Let `task` hold its share of its user's month budget: `hold_usd` (the setting; None:
    all that remains), at most what remains after the month's spend and the other open
    tasks' holds. Raises `BudgetExceededError` when nothing remains. Holding again replaces
    the task's earlier hold. A user without a cap gets no hold."""
    user_id = task.user_id
    if user_id is None:
        return BudgetHold(task_id=task.id, month_cost_usd=0.0)
    # the user's row, locked until the transaction ends: holds of one user are serialised
    await session.scalar(select(User.id).where(User.id == user_id).with_for_update())
    cap = await user_cap(session, user_id, default)
    spent = await month_spend(session, user_id)
    if cap is None:
        task.budget_hold_usd = None
        return BudgetHold(task_id=task.id, user_id=user_id, month_cost_usd=spent)
    held = await held_usd(session, user_id, besides=task.id)
    remaining = cap - spent - held
    if remaining <= 0:
        task.budget_hold_usd = None
        raise _exceeded(user_id, spent, held, cap)
    hold = remaining if hold_usd is None else min(hold_usd, remaining)
    task.budget_hold_usd = hold
    await session.flush()
    return BudgetHold(
        task_id=task.id,
        user_id=user_id,
        monthly_cap_usd=cap,
        month_cost_usd=spent,
        held_by_others_usd=held,
        hold_usd=hold,
    )
