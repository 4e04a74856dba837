"""The cheap read path: the credential cache and its revocation, reads without a commit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import pytest
from sqlalchemy import event, literal, select, update

from services.api.app import create_app
from services.api.auth.cache import CredentialCache
from services.api.auth.models import ApiKey
from services.api.auth.principal import Principal
from services.api.auth.service import hash_key
from services.api.db import PING_AFTER_IDLE_S, Database, utc_now
from services.api.direct import Unavailable
from services.api.outbox.models import OutboxMessage
from services.api.tasks.models import Task
from services.api.tasks.service import TaskService
from shared.api_client import NotFoundError, UnauthorizedError
from shared.api_client.schemas import ApiKeyCreate
from shared.contracts import EngineeringMessage, ProjectCreate, TaskCreate, TaskDTO, TaskType
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
    """Count the commits the engine sees while inside, and the direct path's (a create's
    transaction on a direct connection, `direct.py`)."""
    seen = [0]

    def on_commit(_connection: object) -> None:
        seen[0] += 1

    engine = database.engine.sync_engine
    event.listen(engine, "commit", on_commit)
    direct = database.direct.commits
    try:
        yield seen
    finally:
        event.remove(engine, "commit", on_commit)
        seen[0] += database.direct.commits - direct


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
    """Revoked behind this process's back, a cached key works until its entry expires.
    The cache's clock is moved, not waited for: with a real 0.5 s window, a loaded machine
    took longer than the window between the first request and the second (a flake)."""
    app = create_app(api.database, auth_cache_ttl_s=5)
    now = [1000.0]
    cache: CredentialCache = app.state.credentials
    cache.clock = lambda: now[0]
    harness = ApiHarness(api.database, app, api.admin_key, api.service_key)
    async with harness.client(api.admin_key) as admin:
        created = await admin.create_key(ApiKeyCreate(name="ci", scope="service"))
    async with harness.client(created.key) as service:
        await service.list_projects()
        await _revoke_in_database(api.database, created.key)
        now[0] += 4.9
        await service.list_projects()  # still cached: the documented window
        now[0] += 0.1
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
    """The SQL statements run while inside, through the engine or directly (`direct.py`)."""
    seen: list[str] = []

    def on_execute(*args: object) -> None:
        seen.append(str(args[2]))

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_execute)
    database.direct.listeners.append(seen.append)
    try:
        yield seen
    finally:
        database.direct.listeners.remove(seen.append)
        event.remove(engine, "before_cursor_execute", on_execute)


async def test_a_task_read_is_one_query_and_keeps_the_owner_rule(api: ApiHarness) -> None:
    """With the credential cached, `GET /api/tasks/{id}` runs one direct statement (the task
    joined with its project's owner, no session); its owner and admins see it, another user
    and an unknown id get 404, and the answer carries the task's fields."""
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
        assert api.database.direct.fallbacks == 0
        assert seen.model_dump() == TaskDTO.model_validate(task.model_dump()).model_dump()
        with pytest.raises(NotFoundError, match="not found"):
            await other.get_task(task.id)
        with pytest.raises(NotFoundError, match="not found"):
            await owner.get_task("no-such-task")
    async with api.client(api.admin_key) as admin:
        assert (await admin.get_task(task.id)).spec == "read me"


async def test_a_direct_read_answers_what_a_session_reads(api: ApiHarness) -> None:
    """The direct path's values go through the engine's result processors: a task with a
    JSON result and every timestamp set reads the same as through a session."""
    owner_id, _ = await api.user(31)
    async with api.client(api.admin_key) as admin:
        project = await admin.create_project(ProjectCreate(name="p"), owner_id=owner_id)
        task = await admin.create_task(
            TaskCreate(project_id=project.id, type=TaskType.ENGINEERING, spec="json")
        )
    result = {"commit_sha": "abc", "files_changed": ["a.py"], "nested": {"n": 1.5}}
    async with api.http(api.service_key) as http:
        changed = await http.patch(
            f"/api/tasks/{task.id}", json={"status": "running", "result": result}
        )
        assert changed.status_code == 200, changed.text
        direct = await http.get(f"/api/tasks/{task.id}")
    assert direct.status_code == 200
    assert api.database.direct.fallbacks == 0
    async with api.database.sessionmaker() as session:
        principal = Principal(key_id=1, scope="admin")
        through_session = await TaskService(session).read(principal, task.id)
    assert direct.content == through_session.model_dump_json().encode()
    assert direct.json()["result"] == result


async def test_an_uncached_credential_is_one_direct_read(api: ApiHarness) -> None:
    """A fresh process (empty cache): the credential is looked up with one direct statement,
    the task with another, and no session runs any; a revoked key is refused the same way."""
    owner_id, token = await api.user(41)
    async with api.client(api.admin_key) as admin:
        project = await admin.create_project(ProjectCreate(name="p"), owner_id=owner_id)
        task = await admin.create_task(
            TaskCreate(project_id=project.id, type=TaskType.ENGINEERING, spec="x")
        )
    harness = ApiHarness(api.database, create_app(api.database), api.admin_key, api.service_key)
    engine_statements: list[str] = []

    def on_execute(*args: object) -> None:
        engine_statements.append(str(args[2]))

    event.listen(api.database.engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        with counted_statements(api.database) as statements:
            async with harness.client(token) as owner:
                assert (await owner.get_task(task.id)).id == task.id
    finally:
        event.remove(api.database.engine.sync_engine, "before_cursor_execute", on_execute)
    assert engine_statements == []
    assert len(statements) == 2, statements
    assert "api_keys" in statements[0]
    await _revoke_in_database(api.database, token)
    fresh = ApiHarness(api.database, create_app(api.database), api.admin_key, api.service_key)
    async with fresh.client(token) as revoked:
        with pytest.raises(UnauthorizedError, match="revoked"):
            await revoked.get_task(task.id)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_broken_direct_connection_gives_way_to_the_session(api: ApiHarness) -> None:
    """SQLite: the direct connection fails (here: closed behind the reader's back); that read
    is answered through a session with the right task, the broken connection is dropped, and
    the next read is direct again on a new one."""
    owner_id, _ = await api.user(51)
    async with api.client(api.admin_key) as admin:
        project = await admin.create_project(ProjectCreate(name="p"), owner_id=owner_id)
        task = await admin.create_task(
            TaskCreate(project_id=project.id, type=TaskType.ENGINEERING, spec="x")
        )
        await admin.get_task(task.id)  # the credential is cached, the connection open
        broken = api.database.direct._sqlite
        assert broken is not None
        broken.close()
        assert (await admin.get_task(task.id)).spec == "x"
        assert api.database.direct.fallbacks == 1
        with counted_statements(api.database) as statements:
            assert (await admin.get_task(task.id)).spec == "x"
        assert api.database.direct.fallbacks == 1
        assert len(statements) == 1
        assert api.database.direct._sqlite is not broken


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_direct_connections_killed_by_the_server_are_replaced(api: ApiHarness) -> None:
    """PostgreSQL: the server ends every connection (a restart, an operator). Pooled
    connections idle for over a second are pinged and replaced before use, so requests
    through a session (the task list) do not fail; task reads keep answering (a new direct
    connection, or the session once) with the right task."""
    owner_id, _ = await api.user(61)
    async with api.client(api.admin_key) as admin:
        project = await admin.create_project(ProjectCreate(name="p"), owner_id=owner_id)
        task = await admin.create_task(
            TaskCreate(project_id=project.id, type=TaskType.ENGINEERING, spec="x")
        )
        await admin.get_task(task.id)
        dsn = api.database.engine.url.set(drivername="postgresql")
        outsider = await asyncpg.connect(dsn.render_as_string(hide_password=False))
        try:
            ended = await outsider.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await outsider.close()
        assert ended >= 2  # the engine's pooled connection and the direct one
        await asyncio.sleep(PING_AFTER_IDLE_S + 0.2)
    async with api.http(api.admin_key) as http:  # no retries: the first answer counts
        for _ in range(3):
            listed = await http.get("/api/tasks")
            assert listed.status_code == 200, listed.text
            assert [row["id"] for row in listed.json()["items"]] == [task.id]
            read = await http.get(f"/api/tasks/{task.id}")
            assert read.status_code == 200, read.text
    assert api.database.direct.fallbacks <= 1


async def test_an_in_memory_database_has_no_direct_path() -> None:
    """An in-memory SQLite database is private to its connection: reads go through the
    session, with the same answers."""
    database = Database("sqlite+aiosqlite:///:memory:")
    try:
        assert not database.direct.enabled
        assert isinstance(await database.direct.fetch_one(select(literal(1)), {}), Unavailable)
    finally:
        await database.close()


async def test_a_create_with_a_free_turn_is_four_statements_or_one(api: ApiHarness) -> None:
    """An engineering task created while its project has a free turn and nothing waiting:
    the project with its owner's cap, the turns, the task and its outbox row (released at
    once; on PostgreSQL all of it in one call of `create_engineering_task`, migration 0015,
    one round trip), one commit. With a task waiting, the new one waits behind it."""
    owner_id, token = await api.user(71)
    async with api.client(api.admin_key) as admin:
        project = await admin.create_project(ProjectCreate(name="p"), owner_id=owner_id)
    body = TaskCreate(project_id=project.id, type=TaskType.ENGINEERING, spec="x")
    async with api.client(token) as owner:
        await owner.get_project(project.id)  # the credential is cached
        with (
            counted_statements(api.database) as statements,
            counted_commits(api.database) as commits,
        ):
            first = await owner.create_task(body)
        assert commits[0] == 1
        if api.database.is_sqlite:
            assert [s.split()[0] for s in statements] == ["SELECT", "SELECT", "INSERT", "INSERT"]
        else:
            assert len(statements) == 1, statements
            assert "FROM create_engineering_task(" in statements[0]
        second = await owner.create_task(body)  # the turn is taken: it waits
        third = await owner.create_task(body)
    async with api.database.sessionmaker() as session:
        released = {
            row.id: row.released_at is not None
            for row in (await session.scalars(select(Task).where(Task.project_id == project.id)))
        }
        messages = (await session.scalars(select(OutboxMessage))).all()
    assert released == {first.id: True, second.id: False, third.id: False}
    assert [EngineeringMessage.model_validate_json(m.payload).task_id for m in messages] == [
        first.id
    ]
