"""Servers and ports: concurrent allocations never share a port; re-deploys reuse theirs."""

from __future__ import annotations

import asyncio

import pytest

from shared.api_client import ConflictError, NotFoundError
from shared.api_client.schemas import ServerCreate, ServerStatus, ServerUpdate
from shared.contracts import ProjectCreate
from tests.support.api import ApiHarness

CONCURRENT = 12


async def test_concurrent_allocations_get_distinct_ports(api: ApiHarness) -> None:
    """Many projects allocating on one server at once each get their own port."""
    async with api.client(api.admin_key) as admin:
        user_id, _ = await api.user(1)
        await admin.create_server(
            ServerCreate(
                handle="s1", address="10.0.0.1", port_range_start=20000, port_range_end=20999
            )
        )
        projects = [
            await admin.create_project(ProjectCreate(name=f"p{i}"), owner_id=user_id)
            for i in range(CONCURRENT)
        ]
    clients = [api.client(api.service_key) for _ in projects]
    try:
        allocations = await asyncio.gather(
            *(c.allocate_port("s1", p.id) for c, p in zip(clients, projects, strict=True))
        )
    finally:
        for client in clients:
            await client.aclose()
    ports = sorted(a.port for a in allocations)
    assert ports == list(range(20000, 20000 + CONCURRENT))
    assert not any(a.reused for a in allocations)


async def test_redeploy_reuses_and_concurrent_same_project_agrees(api: ApiHarness) -> None:
    """One project allocating twice at once, and again later, always gets the same port."""
    user_id, _ = await api.user(1)
    async with api.client(api.service_key) as service, api.client(api.admin_key) as admin:
        await service.create_server(ServerCreate(handle="s1", address="10.0.0.1"))
        project = await admin.create_project(ProjectCreate(name="p"), owner_id=user_id)
        together = await asyncio.gather(
            *(service.allocate_port("s1", project.id) for _ in range(4))
        )
        again = await service.allocate_port("s1", project.id)
        assert {a.port for a in together} == {again.port} == {10_000}
        assert sum(not a.reused for a in together) == 1
        assert again.reused
        server = await service.get_server("s1")
        assert (server.capacity, server.allocated) == (1000, 1)


async def test_full_server_release_and_status(api: ApiHarness) -> None:
    """A full server refuses with no_free_port; a release frees the port for another project."""
    user_id, _ = await api.user(1)
    async with api.client(api.admin_key) as admin:
        await admin.create_server(
            ServerCreate(handle="tiny", address="h", port_range_start=3000, port_range_end=3001)
        )
        p = [
            await admin.create_project(ProjectCreate(name=f"{i}"), owner_id=user_id)
            for i in range(3)
        ]
        assert (await admin.allocate_port("tiny", p[0].id)).port == 3000
        assert (await admin.allocate_port("tiny", p[1].id)).port == 3001
        with pytest.raises(ConflictError) as full:
            await admin.allocate_port("tiny", p[2].id)
        assert full.value.code == "no_free_port"
        await admin.release_port("tiny", p[0].id)
        assert (await admin.allocate_port("tiny", p[2].id)).port == 3000
        assert [a.port for a in await admin.list_allocations("tiny")] == [3000, 3001]
        with pytest.raises(NotFoundError):
            await admin.release_port("tiny", p[0].id)
        ready = await admin.update_server("tiny", ServerUpdate(status=ServerStatus.READY))
        assert ready.status == ServerStatus.READY
        assert (await admin.list_servers(status=ServerStatus.READY)).total == 1
        await admin.update_server("tiny", ServerUpdate(status=ServerStatus.DECOMMISSIONED))
        with pytest.raises(ConflictError, match="decommissioned"):
            await admin.allocate_port("tiny", p[0].id)


async def test_server_validation(api: ApiHarness) -> None:
    """A duplicate handle is a conflict; an inverted port range names its field."""
    async with api.http(api.admin_key) as http:
        body = {"handle": "s", "address": "a", "port_range_start": 5000, "port_range_end": 4000}
        inverted = await http.post("/api/servers", json=body)
        assert inverted.status_code == 422
        assert inverted.json()["fields"][0]["field"] == "port_range_end"
        ok = {"handle": "s", "address": "a", "credentials_ref": "env:SSH_KEY"}
        assert (await http.post("/api/servers", json=ok)).status_code == 201
        dup = await http.post("/api/servers", json=ok)
    assert (dup.status_code, dup.json()["fields"][0]["field"]) == (409, "handle")
