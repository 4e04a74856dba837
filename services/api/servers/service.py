"""Rules of servers and ports: atomic allocation, reuse on re-deploy, admins and services only.

Allocation first writes the server row (`lock_for_allocation`), which serialises concurrent
allocations on that server until the request's commit, on PostgreSQL (row lock) and SQLite
(write lock) alike; then it reuses the project's allocation or takes the lowest free port.
The unique constraints (server, port) and (server, project) back this up: if anything ever
slipped through, the database refuses the duplicate (409), it never stores it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.api.auth.principal import Principal
from services.api.db import utc_now
from services.api.errors import (
    ConflictError,
    InvalidRequestError,
    NoFreePortError,
    NotFoundError,
)
from services.api.projects.repository import ProjectRepository
from services.api.servers.models import PortAllocation, Server
from services.api.servers.repository import ServerRepository
from shared.api_client.schemas import (
    PortAllocationDTO,
    ServerCreate,
    ServerDTO,
    ServerStatus,
    ServerUpdate,
)
from shared.contracts import ProjectStatus

__all__ = ["ServerService"]


class ServerService:
    """Register, list and change servers; allocate and release ports."""

    def __init__(self, session: AsyncSession, principal: Principal) -> None:
        principal.require("admin", "service")
        self.servers = ServerRepository(session)
        self.projects = ProjectRepository(session)

    async def create(self, request: ServerCreate) -> ServerDTO:
        """Register a server; `ConflictError` when the handle is taken."""
        if request.port_range_end < request.port_range_start:
            raise InvalidRequestError("must not be below port_range_start", field="port_range_end")
        if await self.servers.get(request.handle) is not None:
            raise ConflictError(f"server {request.handle!r} exists", field="handle")
        server = Server(**request.model_dump(mode="json"), allocation_seq=0, created_at=utc_now())
        return _dto(await self.servers.add(server), 0)

    async def get(self, handle: str) -> ServerDTO:
        """One server with its allocation count."""
        server = await self._server(handle)
        counts = await self.servers.allocated_counts([handle])
        return _dto(server, counts.get(handle, 0))

    async def page(
        self, *, status: ServerStatus | None, limit: int, offset: int
    ) -> tuple[list[ServerDTO], int]:
        """A page of servers."""
        rows, total = await self.servers.list(
            status=status.value if status else None, limit=limit, offset=offset
        )
        counts = await self.servers.allocated_counts([row.handle for row in rows])
        return [_dto(row, counts.get(row.handle, 0)) for row in rows], total

    async def update(self, handle: str, change: ServerUpdate) -> ServerDTO:
        """Change status, address or credential reference."""
        server = await self._server(handle)
        for name in ("status", "address", "credentials_ref"):
            if name in change.model_fields_set:
                value = getattr(change, name)
                if name != "credentials_ref" and value is None:
                    raise InvalidRequestError("must not be null", field=name)
                setattr(server, name, value.value if isinstance(value, ServerStatus) else value)
        server.updated_at = utc_now()
        await self.servers.flush()
        return await self.get(handle)

    async def allocate(self, handle: str, project_id: str) -> PortAllocationDTO:
        """The project's port on the server: the existing one, else the lowest free one."""
        server = await self._server(handle)
        if server.status == ServerStatus.DECOMMISSIONED.value:
            raise ConflictError(f"server {handle!r} is decommissioned", field="handle")
        if await self.projects.get(project_id) is None:
            raise NotFoundError(f"project {project_id!r} not found", field="project_id")
        await self.servers.lock_for_allocation(handle)
        existing = await self.servers.allocation(handle, project_id)
        if existing is not None:
            return _allocation_dto(existing, reused=True)
        used = await self.servers.used_ports(handle)
        port = next(
            (p for p in range(server.port_range_start, server.port_range_end + 1) if p not in used),
            None,
        )
        if port is None:
            raise NoFreePortError(f"server {handle!r} has no free port left")
        allocation = PortAllocation(
            server_handle=handle, project_id=project_id, port=port, created_at=utc_now()
        )
        return _allocation_dto(await self.servers.add_allocation(allocation), reused=False)

    async def allocations(
        self, handle: str, *, project_status: ProjectStatus | None = None
    ) -> list[PortAllocationDTO]:
        """Every allocation of a server (only those of projects in `project_status`)."""
        await self._server(handle)
        status = None if project_status is None else project_status.value
        rows = await self.servers.allocations(handle, project_status=status)
        return [_allocation_dto(row) for row in rows]

    async def release(self, handle: str, project_id: str) -> None:
        """Free the project's port on the server."""
        allocation = await self.servers.allocation(handle, project_id)
        if allocation is None:
            raise NotFoundError(f"project {project_id!r} has no port on server {handle!r}")
        await self.servers.delete_allocation(allocation)

    async def _server(self, handle: str) -> Server:
        server = await self.servers.get(handle)
        if server is None:
            raise NotFoundError(f"server {handle!r} not found")
        return server


def _dto(server: Server, allocated: int) -> ServerDTO:
    capacity = server.port_range_end - server.port_range_start + 1
    return ServerDTO.model_validate(
        {
            **{name: getattr(server, name) for name in _SERVER_FIELDS},
            "capacity": capacity,
            "allocated": allocated,
        }
    )


_SERVER_FIELDS: Sequence[str] = (
    "handle",
    "address",
    "ssh_user",
    "credentials_ref",
    "status",
    "port_range_start",
    "port_range_end",
    "created_at",
)


def _allocation_dto(row: PortAllocation, *, reused: bool = False) -> PortAllocationDTO:
    return PortAllocationDTO(
        server_handle=row.server_handle,
        project_id=row.project_id,
        port=row.port,
        created_at=row.created_at,
        reused=reused,
    )
