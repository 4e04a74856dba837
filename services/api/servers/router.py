"""HTTP routes of servers and port allocations (admins and services)."""

from __future__ import annotations

from fastapi import APIRouter, status

from services.api.deps import CallerDep, PageDep, SessionDep
from services.api.servers.service import ServerService
from shared.api_client.schemas import (
    Page,
    PortAllocationCreate,
    PortAllocationDTO,
    ServerCreate,
    ServerDTO,
    ServerStatus,
    ServerUpdate,
)
from shared.api_client.text import Identifier, Reference
from shared.contracts import ProjectStatus

router = APIRouter(prefix="/api/servers", tags=["servers"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_server(body: ServerCreate, caller: CallerDep, db: SessionDep) -> ServerDTO:
    """Register a deploy server."""
    return await ServerService(db, caller).create(body)


@router.get("")
async def list_servers(
    caller: CallerDep, db: SessionDep, page: PageDep, status: ServerStatus | None = None
) -> Page[ServerDTO]:
    """List servers, optionally by status."""
    items, total = await ServerService(db, caller).page(
        status=status, limit=page.limit, offset=page.offset
    )
    return Page[ServerDTO](items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/{handle}")
async def get_server(handle: Reference, caller: CallerDep, db: SessionDep) -> ServerDTO:
    """One server."""
    return await ServerService(db, caller).get(handle)


@router.patch("/{handle}")
async def update_server(
    handle: Reference, body: ServerUpdate, caller: CallerDep, db: SessionDep
) -> ServerDTO:
    """Change a server's status, address or credential reference."""
    return await ServerService(db, caller).update(handle, body)


@router.post("/{handle}/allocations")
async def allocate_port(
    handle: Reference, body: PortAllocationCreate, caller: CallerDep, db: SessionDep
) -> PortAllocationDTO:
    """The project's port on this server: reused when it has one, else the lowest free."""
    return await ServerService(db, caller).allocate(handle, body.project_id)


@router.get("/{handle}/allocations")
async def list_allocations(
    handle: Reference,
    caller: CallerDep,
    db: SessionDep,
    project_status: ProjectStatus | None = None,
) -> list[PortAllocationDTO]:
    """Every port allocated on this server, or only those of projects in `project_status`
    (infra-service finds the deployments of archived projects this way)."""
    return await ServerService(db, caller).allocations(handle, project_status=project_status)


@router.delete("/{handle}/allocations/{project_id}", status_code=status.HTTP_204_NO_CONTENT)
async def release_port(
    handle: Reference, project_id: Identifier, caller: CallerDep, db: SessionDep
) -> None:
    """Free the project's port on this server."""
    await ServerService(db, caller).release(handle, project_id)
