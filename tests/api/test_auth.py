"""Access: every route but health needs a credential; users see only their own things."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from services.api.auth.models import ApiKey
from shared.api_client import ForbiddenError, NotFoundError, UnauthorizedError, ValidationError
from shared.api_client.schemas import ApiKeyCreate, ServerCreate
from shared.contracts import ProjectCreate, TaskCreate, TaskType
from tests.support.api import ApiHarness


async def test_health_needs_no_credential(api: ApiHarness) -> None:
    """/health and /ready answer without a credential."""
    async with api.http() as http:
        assert (await http.get("/health")).json()["status"] == "ok"
        ready = await http.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/projects"),
        ("POST", "/api/tasks"),
        ("GET", "/api/servers"),
        ("GET", "/api/users/me"),
        ("GET", "/api/keys"),
    ],
)
async def test_routes_refuse_without_credential(api: ApiHarness, method: str, path: str) -> None:
    """Without a credential every API route answers 401 with the error body."""
    async with api.http() as http:
        response = await http.request(method, path, json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "unauthenticated"
    assert "Authorization: Bearer" in response.json()["message"]


async def test_unknown_and_telegram_id_are_not_credentials(api: ApiHarness) -> None:
    """A made-up key, or a user's Telegram id in any header, gets 401."""
    await api.user(4242)
    async with api.http("orc_not-a-key") as http:
        assert (await http.get("/api/projects")).status_code == 401
    async with api.http("4242") as http:
        headers = {"X-Telegram-Id": "4242"}
        response = await http.get("/api/projects", headers=headers)
    assert response.status_code == 401
    assert response.json()["message"] == "invalid or revoked credential"


async def test_keys_are_stored_hashed_and_revocable(api: ApiHarness) -> None:
    """The database holds no secret; a revoked key stops working at once."""
    async with api.client(api.admin_key) as admin:
        created = await admin.create_key(ApiKeyCreate(name="ci", scope="service"))
    async with api.database.sessionmaker() as session:
        hashes = (await session.scalars(select(ApiKey.key_hash))).all()
    assert created.key not in hashes
    assert all(len(h) == 64 and not h.startswith("orc_") for h in hashes)
    async with api.http(api.admin_key) as http:
        assert (await http.delete(f"/api/keys/{created.id}")).status_code == 204
    async with api.client(created.key) as revoked:
        with pytest.raises(UnauthorizedError, match="revoked"):
            await revoked.list_projects()


async def test_user_sees_only_own_projects_and_tasks(api: ApiHarness) -> None:
    """A user lists and reads only their projects and tasks; others' are 404; admins see all."""
    alice_id, alice = await api.user(1)
    _, bob = await api.user(2)
    async with api.client(alice) as a, api.client(bob) as b, api.client(api.admin_key) as admin:
        project = await a.create_project(ProjectCreate(name="alice's"))
        task = await a.create_task(TaskCreate(project_id=project.id, type=TaskType.SCAFFOLDING))
        await b.create_project(ProjectCreate(name="bob's"))
        assert [p.name for p in (await a.list_projects()).items] == ["alice's"]
        assert project.owner_id == alice_id
        with pytest.raises(NotFoundError):
            await b.get_project(project.id)
        with pytest.raises(NotFoundError):
            await b.get_task(task.id)
        with pytest.raises(NotFoundError):
            await b.cancel_task(task.id)
        with pytest.raises(NotFoundError):
            await b.create_task(TaskCreate(project_id=project.id, type=TaskType.ENGINEERING))
        assert (await b.list_tasks()).total == 0
        assert (await b.list_projects(owner_id=alice_id)).total == 0
        assert (await admin.list_projects()).total == 2
        assert (await admin.get_task(task.id)).id == task.id


async def test_tokens_a_token_minted_die_with_it(api: ApiHarness) -> None:
    """A worker's minted token cannot outlive it: revoking a user token revokes the tokens it
    created, and theirs, but not its owner's other tokens."""
    user_id, own = await api.user(5)
    async with api.client(api.service_key) as service:
        worker = await service.create_key(ApiKeyCreate(name="po", user_id=user_id))
    async with api.client(worker.key) as po:
        child = await po.create_key(ApiKeyCreate(name="kept?"))
    async with api.client(child.key) as minted:
        grandchild = await minted.create_key(ApiKeyCreate(name="kept??"))
        assert (await minted.me()).id == user_id
    async with api.client(api.service_key) as service:
        await service.revoke_key(worker.id)
    for key in (worker.key, child.key, grandchild.key):
        async with api.client(key) as revoked:
            with pytest.raises(UnauthorizedError, match="revoked"):
                await revoked.list_projects()
    async with api.client(own) as untouched:
        assert (await untouched.me()).id == user_id
    async with api.database.sessionmaker() as session:
        rows = {row.id: row for row in (await session.scalars(select(ApiKey))).all()}
    assert rows[child.id].parent_id == worker.id
    assert rows[grandchild.id].parent_id == child.id
    assert rows[worker.id].parent_id is None  # minted by a service, not a user token


async def test_scopes_are_enforced(api: ApiHarness) -> None:
    """Users may not touch servers, users or keys of others; services may not create users."""
    _, alice = await api.user(1)
    async with api.client(alice) as a, api.client(api.service_key) as service:
        with pytest.raises(ForbiddenError, match="scope admin or service") as denied:
            await a.create_server(ServerCreate(handle="s", address="10.0.0.1"))
        assert denied.value.status_code == 403
        with pytest.raises(ValidationError, match="only admins"):
            await a.create_key(ApiKeyCreate(name="x", scope="admin"))
        own = await a.create_key(ApiKeyCreate(name="phone"))
        assert own.scope == "user"
        with pytest.raises(ForbiddenError):
            await service.create_key(ApiKeyCreate(name="x", scope="service"))
        assert (await service.find_user(1)) is not None
    async with api.http(api.service_key) as http:
        assert (await http.post("/api/users", json={"telegram_id": 9})).status_code == 403


async def test_me_resolves_the_token_user(api: ApiHarness) -> None:
    """A user token acts as its user (`/api/users/me`)."""
    user_id, token = await api.user(77)
    async with api.client(token) as client:
        me = await client.me()
    assert (me.id, me.telegram_id, me.is_admin) == (user_id, 77, False)
