"""The cheap read path: the credential cache and its revocation, reads without a commit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, update

from services.api.app import create_app
from services.api.auth.models import ApiKey
from services.api.auth.service import hash_key
from services.api.db import Database, utc_now
from shared.api_client import NotFoundError, UnauthorizedError
from shared.api_client.schemas import ApiKeyCreate
from shared.contracts import ProjectCreate, TaskCreate, TaskDTO, TaskType
from tests.support.api import ApiHarness


async def _revoke_in_database(database: Database, secret: str) -> None:
    """What another API process (or an operator) does: the row revoked, this app not told."""
    async with database.sessionmaker() as session:
        await session.execute(
            update(ApiKey).where(ApiKey.key_hash == hash_key(secret)).values(revoked_at=utc_now())
        )
        await session.commit()


@contextmanager
def counted_commits(database: Database) -> Iterator[list[int]]:
    """Count the commits the engine sees while inside."""
    seen = [0]

    def on_commit(_connection: object) -> None:
        seen[0] += 1

    engine = database.engine.sync_engine
    event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(engine, "commit", on_commit)


async def test_a_revocation_through_this_process_applies_at_once(api: ApiHarness) -> None:
    """A key used (so cached) and then revoked through this API is refused on the next
    request, and so are the tokens it minted."""
    async with api.client(api.admin_key) as admin:
        created = await admin.create_key(ApiKeyCreate(name="ci", scope="service"))
    async with api.client(created.key) as service:
        await service.list_projects()  # cached now
        await service.list_projects()
    async with api.http(api.admin_key) as http:
        assert (await http.delete(f"/api/keys/{created.id}")).status_code == 204
    async with api.client(created.key) as revoked:
        with pytest.raises(UnauthorizedError, match="revoked"):
            await revoked.list_projects()


async def test_a_revocation_elsewhere_applies_within_the_ttl(api: ApiHarness) -> None:
    """Revoked behind this process's back, a cached key works until its entry expires."""
    app = create_app(api.database, auth_cache_ttl_s=0.5)
    harness = ApiHarness(api.database, app, api.admin_key, api.service_key)
    async with harness.client(api.admin_key) as admin:
        created = await admin.create_key(ApiKeyCreate(name="ci", scope="service"))
    async with harness.client(created.key) as service:
        await service.list_projects()
        await _revoke_in_database(api.database, created.key)
        await service.list_projects()  # still cached: the documented window
        await asyncio.sleep(0.6)
        with pytest.raises(UnauthorizedError, match="revoked"):
            await service.list_projects()


async def test_without_a_ttl_every_request_looks_the_credential_up(api: ApiHarness) -> None:
    """`auth_cache_ttl_s = 0`: a revocation in the database applies to the next request."""
    app = create_app(api.database, auth_cache_ttl_s=0)
    harness = ApiHarness(api.database, app, api.admin_key, api.service_key)
    async with harness.client(api.admin_key) as admin:
        created = await admin.create_key(ApiKeyCreate(name="ci", scope="service"))
    async with harness.client(created.key) as service:
        await service.list_projects()
        await _revoke_in_database(api.database, created.key)
        with pytest.raises(UnauthorizedError, match="revoked"):
            await service.list_projects()


async def test_unknown_credentials_are_never_cached(api: ApiHarness) -> None:
    """A refused credential is refused every time, and a key created after a refusal of
    the same secret is not shadowed by it."""
    async with api.client("orc_not-a-key") as stranger:
        for _ in range(2):
            with pytest.raises(UnauthorizedError, match="invalid"):
                await stranger.list_projects()


async def test_reads_do_not_commit_and_writes_do(api: ApiHarness) -> None:
    """A task read is not committed (the session only rolls back); a create is."""
    user_id, _ = await api.user(5)
    async with api.client(api.admin_key) as admin:
        project = await admin.create_project(ProjectCreate(name="p"), owner_id=user_id)
        task = await admin.create_task(
            TaskCreate(project_id=project.id, type=TaskType.ENGINEERING, spec="x")
        )
        with counted_commits(api.database) as reads:
            for _ in range(3):
                assert (await admin.get_task(task.id)).id == task.id
            await admin.list_tasks()
        with counted_commits(api.database) as writes:
            await admin.create_task(
                TaskCreate(project_id=project.id, type=TaskType.ENGINEERING, spec="y")
            )
    assert reads[0] == 0
    assert writes[0] == 1


@contextmanager
def counted_statements(database: Database) -> Iterator[list[str]]:
    """The SQL statements the engine runs while inside."""
    seen: list[str] = []

    def on_execute(*args: object) -> None:
        seen.append(str(args[2]))

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)


async def test_a_task_read_is_one_query_and_keeps_the_owner_rule(api: ApiHarness) -> None:
    """With the credential cached, `GET /api/tasks/{id}` runs one statement (the task joined
    with its project's owner); its owner and admins see it, another user and an unknown id
    get 404, and the answer carries the task's fields."""
    owner_id, owner_token = await api.user(21)
    _, other_token = await api.user(22)
    async with api.client(api.admin_key) as admin:
        project = await admin.create_project(ProjectCreate(name="p"), owner_id=owner_id)
        task = await admin.create_task(
            TaskCreate(project_id=project.id, type=TaskType.ENGINEERING, spec="read me")
        )
    async with api.client(owner_token) as owner, api.client(other_token) as other:
        await owner.get_task(task.id)  # the credential is now cached
        with counted_statements(api.database) as statements:
            seen = await owner.get_task(task.id)
        assert len(statements) == 1, statements
        assert "JOIN projects" in statements[0]
        assert seen.model_dump() == TaskDTO.model_validate(task.model_dump()).model_dump()
        with pytest.raises(NotFoundError, match="not found"):
            await other.get_task(task.id)
        with pytest.raises(NotFoundError, match="not found"):
            await owner.get_task("no-such-task")
    async with api.client(api.admin_key) as admin:
        assert (await admin.get_task(task.id)).spec == "read me"
