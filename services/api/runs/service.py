"""Rules of agent run records, usage sums and monthly caps.

Run records: the orchestrator (service scope; admins too) records each agent run of a task
(`POST /api/tasks/{id}/runs`); whoever may read the task reads its runs (the task's owner,
admins, services; anyone else gets 404, as for the task itself).

Usage: the cost of runs adds up per task, project and user. A user reads their own usage;
asking for another user's is refused (403); admins and services may ask for any user or
project. A project filter needs the project to be visible to the caller.

Monthly caps: a user's cap is their own (`users.monthly_budget_usd`, set by an admin) or,
without one, the system's default (`ORCHESTRATOR_API__MONTHLY_BUDGET_USD`; unset: no cap).
An engineering task is refused at creation (409 `budget_exceeded`) while its user's spend of
the calendar month (UTC), with what the user's running tasks hold, has reached the cap. Before
a task's agent starts, the orchestrator has the task hold its share of the cap (`POST
/api/tasks/{id}/budget-hold`, `services.api.runs.caps.hold_month_budget`): concurrent tasks
cannot together spend past it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.auth.principal import Principal
from services.api.errors import ForbiddenError, NotFoundError
from services.api.projects.service import ProjectService
from services.api.runs.caps import hold_month_budget, month_spend, month_start, user_cap
from services.api.runs.models import AgentRun
from services.api.tasks.service import TaskService
from services.api.users.models import User
from shared.api_client.schemas import (
    AgentRunCreate,
    BudgetHold,
    UsageLine,
    UsageReport,
    UserBudget,
    UserBudgetUpdate,
)

__all__ = ["RunService"]

_TOP_TASKS = 50


class RunService:
    """Record and read agent runs; sum usage; set caps."""

    def __init__(
        self,
        session: AsyncSession,
        tasks: TaskService,
        default_cap: float | None = None,
        hold_usd: float | None = None,
    ) -> None:
        self.session = session
        self.tasks = tasks
        self.projects = ProjectService(session)
        self.default_cap = default_cap
        self.hold_usd = hold_usd
        """What a running task holds of its user's monthly cap (None: all that remains)."""

    async def hold(self, principal: Principal, task_id: str) -> BudgetHold:
        """Hold the task's share of its user's monthly cap (services and admins)."""
        principal.require("admin", "service")
        task = await self.tasks.get(principal, task_id)
        return await hold_month_budget(self.session, task, self.default_cap, self.hold_usd)

    async def record(
        self, principal: Principal, task_id: str, body: AgentRunCreate
    ) -> tuple[AgentRun, bool]:
        """Store one run of a task (services and admins); the row and whether it is new.

        A record whose `run_key` the task already has is not stored again: the first row
        is answered (a flow's step replayed after a crash posts its run a second time)."""
        principal.require("admin", "service")
        task = await self.tasks.get(principal, task_id)
        if body.run_key is not None:
            existing = await self._keyed(task.id, body.run_key)
            if existing is not None:
                return existing, False
        run = AgentRun(
            task_id=task.id,
            project_id=task.project_id,
            user_id=task.user_id,
            **body.model_dump(mode="json"),
        )
        try:
            async with self.session.begin_nested():
                self.session.add(run)
        except IntegrityError:
            # Two copies of the same record raced; the other one was stored first.
            existing = await self._keyed(task.id, body.run_key) if body.run_key else None
            if existing is None:
                raise
            return existing, False
        return run, True

    async def _keyed(self, task_id: str, run_key: str) -> AgentRun | None:
        return await self.session.scalar(
            select(AgentRun).where(AgentRun.task_id == task_id, AgentRun.run_key == run_key)
        )

    async def of_task(self, principal: Principal, task_id: str) -> Sequence[AgentRun]:
        """The runs of a task the caller may read, oldest first."""
        task = await self.tasks.get(principal, task_id)
        rows = await self.session.scalars(
            select(AgentRun).where(AgentRun.task_id == task.id).order_by(AgentRun.id)
        )
        return rows.all()

    async def usage(
        self, principal: Principal, *, user_id: int | None, project_id: str | None
    ) -> UsageReport:
        """Usage sums (see the module docstring for who may ask what)."""
        if not principal.sees_everything:
            if principal.user_id is None:
                raise ForbiddenError("this credential does not act as a user")
            if user_id is not None and user_id != principal.user_id:
                raise ForbiddenError("only an admin may read another user's usage")
            user_id = principal.user_id
        if project_id is not None:
            try:
                await self.projects.get(principal, project_id)
            except NotFoundError as error:
                raise NotFoundError(error.message, field="project_id") from None
        filters: list[Any] = []
        if user_id is not None:
            filters.append(AgentRun.user_id == user_id)
        if project_id is not None:
            filters.append(AgentRun.project_id == project_id)
        sums = (
            func.count(AgentRun.id),
            func.coalesce(func.sum(AgentRun.cost_usd), 0.0),
            func.coalesce(func.sum(AgentRun.input_tokens), 0),
            func.coalesce(func.sum(AgentRun.output_tokens), 0),
        )
        total = (await self.session.execute(select(*sums).where(*filters))).one()
        start = month_start()
        month = await self.session.scalar(
            select(func.coalesce(func.sum(AgentRun.cost_usd), 0.0)).where(
                *filters, AgentRun.created_at >= start
            )
        )
        return UsageReport(
            user_id=user_id,
            project_id=project_id,
            runs=int(total[0]),
            cost_usd=float(total[1]),
            input_tokens=int(total[2]),
            output_tokens=int(total[3]),
            month_start=start,
            month_cost_usd=float(month or 0.0),
            monthly_cap_usd=(
                await user_cap(self.session, user_id, self.default_cap)
                if user_id is not None
                else None
            ),
            by_project=await self._lines(AgentRun.project_id, sums, filters, None),
            by_task=await self._lines(AgentRun.task_id, sums, filters, _TOP_TASKS),
        )

    async def _lines(
        self, column: Any, sums: tuple[Any, ...], filters: list[Any], limit: int | None
    ) -> list[UsageLine]:
        query = (
            select(column, *sums).where(*filters).group_by(column).order_by(sums[1].desc(), column)
        )
        if limit is not None:
            query = query.limit(limit)
        rows = (await self.session.execute(query)).all()
        return [
            UsageLine(
                id=str(row[0]),
                runs=int(row[1]),
                cost_usd=float(row[2]),
                input_tokens=int(row[3]),
                output_tokens=int(row[4]),
            )
            for row in rows
        ]

    async def set_cap(
        self, principal: Principal, user_id: int, body: UserBudgetUpdate
    ) -> UserBudget:
        """Set (or clear) a user's own monthly cap (admins)."""
        principal.require("admin")
        user = await self.session.get(User, user_id)
        if user is None:
            raise NotFoundError(f"user {user_id} not found")
        user.monthly_budget_usd = body.monthly_cap_usd
        await self.session.flush()
        return await self.budget(principal, user_id)

    async def budget(self, principal: Principal, user_id: int) -> UserBudget:
        """A user's cap and month spend (themselves, admins, services)."""
        user = await self.session.get(User, user_id)
        if user is None or not (principal.sees_everything or principal.user_id == user_id):
            raise NotFoundError(f"user {user_id} not found")
        return UserBudget(
            user_id=user_id,
            own_cap_usd=user.monthly_budget_usd,
            monthly_cap_usd=await user_cap(self.session, user_id, self.default_cap),
            month_cost_usd=await month_spend(self.session, user_id),
        )
