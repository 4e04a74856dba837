"""All SQL of servers and port allocations."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.projects.models import Project
from services.api.servers.models import PortAllocation, Server

__all__ = ["ServerRepository"]


class ServerRepository:
    """Servers and allocations of one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, server: Server) -> Server:
        """Insert a server."""
        self.session.add(server)
        await self.session.flush()
        return server

    async def get(self, handle: str) -> Server | None:
        """The server with this handle."""
        return await self.session.get(Server, handle)

    async def list(
        self, *, status: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Server], int]:
        """A page of servers by handle, and the total count matching the filter."""
        query = select(Server)
        if status is not None:
            query = query.where(Server.status == status)
        total = await self.session.scalar(select(func.count()).select_from(query.subquery()))
        rows = await self.session.scalars(query.order_by(Server.handle).limit(limit).offset(offset))
        return rows.all(), int(total or 0)

    async def allocated_counts(self, handles: Sequence[str]) -> dict[str, int]:
        """How many ports each of these servers has allocated."""
        if not handles:
            return {}
        rows = await self.session.execute(
            select(PortAllocation.server_handle, func.count())
            .where(PortAllocation.server_handle.in_(handles))
            .group_by(PortAllocation.server_handle)
        )
        return {handle: int(count) for handle, count in rows}

    async def lock_for_allocation(self, handle: str) -> None:
        """Serialise allocations on a server until the transaction ends.

        A write to the server row: PostgreSQL holds its row lock, SQLite its database write
        lock, until commit; concurrent allocations on the same server wait here."""
        await self.session.execute(
            update(Server)
            .where(Server.handle == handle)
            .values(allocation_seq=Server.allocation_seq + 1)
        )

    async def allocation(self, handle: str, project_id: str) -> PortAllocation | None:
        """The project's allocation on a server."""
        found = await self.session.scalars(
            select(PortAllocation).where(
                PortAllocation.server_handle == handle, PortAllocation.project_id == project_id
            )
        )
        return found.first()

    async def allocations(
        self, handle: str, *, project_status: str | None = None
    ) -> Sequence[PortAllocation]:
        """Every allocation of a server, by port (only of projects in `project_status`)."""
        query = select(PortAllocation).where(PortAllocation.server_handle == handle)
        if project_status is not None:
            query = query.join(Project, Project.id == PortAllocation.project_id).where(
                Project.status == project_status
            )
        found = await self.session.scalars(query.order_by(PortAllocation.port))
        return found.all()

    async def used_ports(self, handle: str) -> set[int]:
        """The ports allocated on a server."""
        found = await self.session.scalars(
            select(PortAllocation.port).where(PortAllocation.server_handle == handle)
        )
        return set(found.all())

    async def add_allocation(self, allocation: PortAllocation) -> PortAllocation:
        """Insert an allocation."""
        self.session.add(allocation)
        await self.session.flush()
        return allocation

    async def delete_allocation(self, allocation: PortAllocation) -> None:
        """Release an allocation."""
        await self.session.delete(allocation)
        await self.session.flush()

    async def flush(self) -> None:
        """Send pending changes to the database (inside the request's transaction)."""
        await self.session.flush()
