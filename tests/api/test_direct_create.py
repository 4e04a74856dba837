"""The task create on a direct connection (`create_task_direct`, `direct.py`) against the
session path (`TaskService.create`): the same rows, the same answer, the same refusals; the
cases it leaves to the session path write nothing; failures roll back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import pytest
from pydantic import BaseModel
from sqlalchemy import delete, func, select

from services.api.auth.principal import Principal
from services.api.db import Database, utc_now
from services.api.direct import UNAVAILABLE, DirectTransaction, Unavailable
from services.api.errors import ApiError, NotFoundError
from services.api.outbox import repository as outbox_repository
from services.api.outbox.models import OutboxMessage
from services.api.outbox.repository import row_values
from services.api.projects.models import Project
from services.api.tasks import service
from services.api.tasks.models import Task
from services.api.tasks.repository import TASK_INSERT
from services.api.tasks.service import TaskService, create_task_direct
from services.api.users.models import User
from shared.api_client.schemas import TaskCreated
from shared.contracts import EngineeringMessage, ProjectStatus, TaskCreate, TaskType, new_id
from shared.settings import TaskDeadlines
from tests.support.api import ApiHarness

DEADLINES = TaskDeadlines()
ADMIN = Principal(key_id=1, scope="admin")
SHA = "a" * 40


async def new_user(database: Database, *, cap: float | None = None) -> int:
    """A user (with their own monthly cap); returns its id."""
    async with database.sessionmaker() as session:
        user = User(telegram_id=random.randint(1, 2**40), monthly_budget_usd=cap)
        session.add(user)
        await session.commit()
        return user.id


async def new_project(
    database: Database,
    owner_id: int | None,
    *,
    status: ProjectStatus = ProjectStatus.DRAFT,
    parallel_tasks: int = 1,
) -> str:
    """A project; returns its id."""
    async with database.sessionmaker() as session:
        project = Project(
            id=new_id(),
            name="p",
            status=status.value,
            owner_id=owner_id,
            parallel_tasks=parallel_tasks,
        )
        session.add(project)
        await session.commit()
        return project.id


async def through_session(
    database: Database,
    principal: Principal,
    body: TaskCreate,
    *,
    correlation_id: str | None = None,
    cap: float | None = None,
) -> TaskCreated:
    """The create through a session, committed (as the route's fallback does)."""
    async with database.sessionmaker() as session:
        task = await TaskService(session, DEADLINES, cap).create(
            principal, body, correlation_id=correlation_id
        )
        await session.commit()
    return TaskCreated.model_validate(task)


async def directly(
    database: Database,
    principal: Principal,
    body: TaskCreate,
    *,
    correlation_id: str | None = None,
    cap: float | None = None,
) -> TaskCreated | Unavailable:
    """The create on the direct path."""
    created = await create_task_direct(
        database,
        principal,
        body,
        correlation_id=correlation_id,
        deadlines=DEADLINES,
        monthly_budget_usd=cap,
    )
    return created if isinstance(created, Unavailable) else created[0]


async def stored(database: Database, task_id: str) -> dict[str, Any]:
    """A task's row and its outbox rows as the session reads them, without what differs
    from one create to another (ids, times), times kept relative to the creation."""
    async with database.sessionmaker() as session:
        task = await session.get(Task, task_id)
        assert task is not None
        owner_id = await session.scalar(
            select(Project.owner_id).where(Project.id == task.project_id)
        )
        rows = (
            await session.scalars(
                select(OutboxMessage).where(OutboxMessage.correlation_id == task.correlation_id)
            )
        ).all()
    created: datetime = task.created_at

    def since(moment: datetime | None) -> float | None:
        return None if moment is None else (moment - created).total_seconds()

    outbox = []
    for row in rows:
        message = json.loads(row.payload)
        assert message["task_id"] == task.id
        assert message["project_id"] == task.project_id
        assert message["correlation_id"] == task.correlation_id
        outbox.append(
            {
                "stream": row.stream,
                "message_type": row.message_type,
                "for_the_tasks_user": message["user_id"] == task.user_id,
                "fields": sorted(message),
                "published_at": row.published_at,
                "attempts": row.attempts,
                "last_error": row.last_error,
                "traceparent": row.traceparent,
                "written_after_s": round(since(row.created_at) or 0.0),
            }
        )
    return {
        "for_the_owner": task.user_id is not None and task.user_id == owner_id,
        "type": task.type,
        "status": task.status,
        "spec": task.spec,
        "result": task.result,
        "updated_at": task.updated_at,
        "cancelled_at": task.cancelled_at,
        "deadline_after_s": since(task.deadline_at),
        "redrive_count": task.redrive_count,
        "redriven_at": task.redriven_at,
        "released_after_s": since(task.released_at),
        "budget_hold_usd": task.budget_hold_usd,
        "outbox": outbox,
    }


def answer(created: TaskCreated) -> dict[str, Any]:
    """The API's answer without what differs from one create to another."""
    return created.model_dump(exclude={"id", "project_id", "created_at", "correlation_id"})


Setup = Callable[[Database], Awaitable[tuple[Principal, str]]]


async def owned(database: Database) -> tuple[Principal, str]:
    """Its owner's project with a free turn."""
    owner = await new_user(database)
    return Principal(key_id=2, scope="user", user_id=owner), await new_project(database, owner)


async def turn_taken(database: Database) -> tuple[Principal, str]:
    """A project whose only turn an open task holds."""
    owner = await new_user(database)
    project = await new_project(database, owner)
    await through_session(
        database, ADMIN, TaskCreate(project_id=project, type=TaskType.ENGINEERING)
    )
    return ADMIN, project


async def wide(database: Database) -> tuple[Principal, str]:
    """A project running 5 tasks at once, 2 of them open."""
    owner = await new_user(database)
    project = await new_project(database, owner, parallel_tasks=5)
    for _ in range(2):
        await through_session(
            database, ADMIN, TaskCreate(project_id=project, type=TaskType.ENGINEERING)
        )
    return ADMIN, project


@pytest.mark.parametrize("setup", [owned, turn_taken, wide], ids=["free", "taken", "wide"])
@pytest.mark.parametrize("task_type", list(TaskType), ids=[t.value for t in TaskType])
async def test_the_direct_create_writes_and_answers_as_the_session(
    database: Database, setup: Setup, task_type: TaskType
) -> None:
    """Two identical projects, one task each, one through each path: the same rows (the
    task, its outbox row or none), the same answer, the caller's correlation id kept."""
    principal, first = await setup(database)
    second_principal, second = await setup(database)
    spec = f"commit {SHA}" if task_type == TaskType.DEPLOY else "do it"
    by_session = await through_session(
        database,
        principal,
        TaskCreate(project_id=first, type=task_type, spec=spec),
        correlation_id="turn-1",
    )
    direct = await directly(
        database,
        second_principal,
        TaskCreate(project_id=second, type=task_type, spec=spec),
        correlation_id="turn-2",
    )
    assert isinstance(direct, TaskCreated)
    assert (by_session.correlation_id, direct.correlation_id) == ("turn-1", "turn-2")
    assert direct.project_id == second
    assert answer(direct) == answer(by_session)
    assert await stored(database, direct.id) == await stored(database, by_session.id)
    assert database.direct.fallbacks == 0


@pytest.mark.parametrize("setup", [owned, turn_taken], ids=["free", "taken"])
async def test_an_engineering_create_runs_few_statements(database: Database, setup: Setup) -> None:
    """PostgreSQL: one statement, the call of `create_engineering_task` (migration 0015)
    locking the project, reading the turns and writing the task, with its outbox row when a
    turn is free, in the transaction of the call (one round trip); SQLite (no round trips):
    the project, the turns, the task, its outbox row when released. Either way the rows of
    the session path (`test_the_direct_create_writes_and_answers_as_the_session`)."""
    principal, project = await setup(database)
    seen: list[str] = []
    database.direct.listeners.append(seen.append)
    try:
        created = await directly(
            database, principal, TaskCreate(project_id=project, type=TaskType.ENGINEERING)
        )
    finally:
        database.direct.listeners.remove(seen.append)
    assert isinstance(created, TaskCreated)
    released = (await stored(database, created.id))["released_after_s"] is not None
    assert released == (setup is owned)
    firsts = [" ".join(sql.split()[:2]) for sql in seen]
    if database.is_sqlite:
        inserts = ["INSERT INTO", "INSERT INTO"] if released else ["INSERT INTO"]
        assert firsts == ["SELECT projects.id,", "SELECT (SELECT", *inserts], seen
    else:
        assert len(seen) == 1, seen
        assert "FROM create_engineering_task(" in seen[0], seen
    assert database.direct.fallbacks == 0


async def refusal(create: Awaitable[object]) -> tuple[type[ApiError], str, str | None, int]:
    """The error a create raised: its type, message, field and status."""
    try:
        await create
    except ApiError as error:
        return type(error), error.message, error.field, error.status_code
    raise AssertionError("the create was not refused")


async def count(database: Database, model: type[Task] | type[OutboxMessage]) -> int:
    """Rows of a table."""
    async with database.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_the_direct_create_refuses_as_the_session_and_writes_nothing(
    database: Database,
) -> None:
    """Unknown project, another user's project, an archived one, a deploy spec naming a
    short sha, a task to run on a project without owner for a caller without user: the same
    error either way, and no row written by the direct path."""
    owner = await new_user(database)
    other = Principal(key_id=3, scope="user", user_id=await new_user(database))
    mine = await new_project(database, owner)
    archived = await new_project(database, owner, status=ProjectStatus.ARCHIVED)
    ownerless = await new_project(database, None)
    cases = [
        (ADMIN, TaskCreate(project_id="nope", type=TaskType.ENGINEERING)),
        (other, TaskCreate(project_id=mine, type=TaskType.ENGINEERING)),
        (ADMIN, TaskCreate(project_id=archived, type=TaskType.DEPLOY)),
        (ADMIN, TaskCreate(project_id=mine, type=TaskType.DEPLOY, spec="commit abc123")),
        (ADMIN, TaskCreate(project_id=ownerless, type=TaskType.DEPLOY)),
        (ADMIN, TaskCreate(project_id=ownerless, type=TaskType.ENGINEERING)),
        (ADMIN, TaskCreate(project_id=archived, type=TaskType.ENGINEERING)),
        (Principal(key_id=5, scope="user"), TaskCreate(project_id=mine, type=TaskType.ENGINEERING)),
    ]
    for principal, body in cases:
        expected = await refusal(through_session(database, principal, body))
        assert await refusal(directly(database, principal, body)) == expected, body
    assert (await count(database, Task), await count(database, OutboxMessage)) == (0, 0)
    assert database.direct.fallbacks == 0


async def test_what_the_direct_create_leaves_to_the_session_writes_nothing(
    database: Database,
) -> None:
    """A cap to check (the owner's own, or the default), a project without owner created by
    a caller acting as a user (their own cap), a free turn with tasks waiting for it:
    `UNAVAILABLE`, nothing written (the route then creates through the session)."""
    capped = await new_user(database, cap=10.0)
    capped_project = await new_project(database, capped)
    owner = await new_user(database)
    project = await new_project(database, owner)
    caller = Principal(key_id=4, scope="admin", user_id=await new_user(database))
    ownerless = await new_project(database, None)
    engineering = TaskCreate(project_id=project, type=TaskType.ENGINEERING)
    await through_session(database, ADMIN, engineering)
    waiting = await through_session(database, ADMIN, engineering)  # behind the first
    async with database.sessionmaker() as session:  # a second turn: `waiting` may run
        found = await session.get(Project, project)
        assert found is not None
        found.parallel_tasks = 2
        await session.commit()
    before = (await count(database, Task), await count(database, OutboxMessage))
    for principal, body, cap in [
        (ADMIN, TaskCreate(project_id=capped_project, type=TaskType.ENGINEERING), None),
        (ADMIN, engineering, 5.0),
        (caller, TaskCreate(project_id=ownerless, type=TaskType.ENGINEERING), None),
        (ADMIN, engineering, None),
    ]:
        assert await directly(database, principal, body, cap=cap) is UNAVAILABLE, body
    assert (await count(database, Task), await count(database, OutboxMessage)) == before
    created = await through_session(database, ADMIN, engineering)  # the session releases
    async with database.sessionmaker() as session:
        released = await session.scalar(select(Task.released_at).where(Task.id == waiting.id))
    assert released is not None  # the waiting task got the turn first
    assert created.id != waiting.id
    assert database.direct.fallbacks == 0  # declined, not failed


def task_row(project_id: str, task_id: str) -> dict[str, Any]:
    """The values of a task insert."""
    now = utc_now()
    return {
        "id": task_id,
        "project_id": project_id,
        "user_id": None,
        "type": "scaffolding",
        "status": "queued",
        "spec": None,
        "correlation_id": new_id(),
        "created_at": now,
        "deadline_at": now,
        "redrive_count": 0,
        "released_at": None,
    }


async def test_a_failed_statement_rolls_back_and_falls_back(database: Database) -> None:
    """A statement the driver refuses (here a duplicate key) after an insert: the whole
    transaction is rolled back, `write` answers `UNAVAILABLE` and counts it; the next write
    works on the same connections."""
    project = await new_project(database, await new_user(database))
    task_id = new_id()

    async def duplicate(tx: DirectTransaction) -> str:
        await tx.execute(TASK_INSERT, task_row(project, task_id))
        await tx.execute(TASK_INSERT, task_row(project, task_id))
        return "committed"

    assert await database.direct.write(duplicate, lock=database.write_lock) is UNAVAILABLE
    assert database.direct.fallbacks == 1
    assert await count(database, Task) == 0

    async def one(tx: DirectTransaction) -> str:
        await tx.execute(TASK_INSERT, task_row(project, task_id))
        return "committed"

    assert await database.direct.write(one, lock=database.write_lock) == "committed"
    assert await count(database, Task) == 1


async def test_a_refusal_rolls_back_and_propagates(database: Database) -> None:
    """An error of the work (a refusal of the request) after an insert: rolled back,
    raised as it is, not a fallback."""
    project = await new_project(database, await new_user(database))

    async def refuse(tx: DirectTransaction) -> str:
        await tx.execute(TASK_INSERT, task_row(project, new_id()))
        raise NotFoundError("no")

    with pytest.raises(NotFoundError):
        await database.direct.write(refuse, lock=database.write_lock)
    assert await count(database, Task) == 0
    assert database.direct.fallbacks == 0


async def test_a_write_cancelled_mid_transaction_leaves_nothing(database: Database) -> None:
    """Cancelled between its statements: nothing is committed, the connection is not left
    in its transaction (SQLite: its lock is released; PostgreSQL: the connection is not
    returned in it), and the next writes work."""
    project = await new_project(database, await new_user(database))
    inserted = asyncio.Event()

    async def stall(tx: DirectTransaction) -> str:
        await tx.execute(TASK_INSERT, task_row(project, new_id()))
        inserted.set()
        await asyncio.Event().wait()
        return "never"

    running = asyncio.create_task(database.direct.write(stall, lock=database.write_lock))
    await inserted.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert await count(database, Task) == 0
    for _ in range(3):
        created = await directly(
            database, ADMIN, TaskCreate(project_id=project, type=TaskType.DEPLOY)
        )
        assert isinstance(created, TaskCreated)
    assert await count(database, Task) == 3


async def test_a_busy_sqlite_falls_back_without_waiting(database: Database) -> None:
    """SQLite: while another process holds the write lock, the direct create does not wait
    for it (the event loop's thread would): `UNAVAILABLE`, counted, nothing written; once
    free, it writes."""
    if not database.is_sqlite:
        pytest.skip("SQLite's write lock")
    project = await new_project(database, await new_user(database))
    path = database.engine.url.database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)
    body = TaskCreate(project_id=project, type=TaskType.DEPLOY)
    try:
        other.execute("BEGIN IMMEDIATE")
        assert await directly(database, ADMIN, body) is UNAVAILABLE
        assert database.direct.fallbacks == 1
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert isinstance(await directly(database, ADMIN, body), TaskCreated)
    assert await count(database, Task) == 1


async def test_the_route_creates_through_the_session_when_the_direct_path_declines(
    api: ApiHarness,
) -> None:
    """A task of a capped owner (left to the session path) is created by the route as
    before, and a task of an uncapped one directly; both answer 201 with their task."""
    capped = await new_user(api.database, cap=10.0)
    free = await new_user(api.database)
    async with api.client(api.admin_key) as admin:
        for owner in (capped, free):
            project = await new_project(api.database, owner)
            commits = api.database.direct.commits
            task = await admin.create_task(
                TaskCreate(project_id=project, type=TaskType.ENGINEERING, spec="x")
            )
            assert (await admin.get_task(task.id)).id == task.id
            assert api.database.direct.commits == commits + (owner == free)


async def test_a_write_cancelled_during_a_statement_does_not_reuse_its_connection(
    database: Database,
) -> None:
    """PostgreSQL: cancelled while a statement runs on the server, the transaction's
    connection is closed rather than handed back to the pool mid-query or inside the
    transaction: the next writes (as many as the pool holds, and more) work, nothing of the
    cancelled one is committed."""
    if database.is_sqlite:
        pytest.skip("SQLite's statements run in the event loop's thread: no await inside")
    project = await new_project(database, await new_user(database))
    started = asyncio.Event()

    async def slow(tx: DirectTransaction) -> str:
        await tx.execute(TASK_INSERT, task_row(project, new_id()))
        started.set()
        await tx.fetch_one(select(func.pg_sleep(30)), {})
        return "never"

    running = asyncio.create_task(database.direct.write(slow))
    await started.wait()
    await asyncio.sleep(0.1)  # the sleep is on the server now (not a figure: any moment works)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    for _ in range(database.direct.max_size + 2):
        created = await directly(
            database, ADMIN, TaskCreate(project_id=project, type=TaskType.DEPLOY)
        )
        assert isinstance(created, TaskCreated)
    assert await count(database, Task) == database.direct.max_size + 2
    assert database.direct.fallbacks == 0


async def test_the_queue_message_is_the_session_paths_byte_for_byte(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox payload of an engineering task is the JSON of its message, the one the
    session path writes for it: on PostgreSQL rendered with a placeholder for the owner,
    which the function of migration 0015 puts in."""
    rendered: list[BaseModel] = []

    def recording(stream: str, message: BaseModel, **fields: Any) -> dict[str, Any]:
        rendered.append(message)
        return row_values(stream, message, **fields)

    monkeypatch.setattr(service, "row_values", recording)
    monkeypatch.setattr(outbox_repository, "row_values", recording)
    owner = await new_user(database)
    payloads = []
    for create in (through_session, directly):
        body = TaskCreate(project_id=await new_project(database, owner), type=TaskType.ENGINEERING)
        created = await create(database, ADMIN, body, correlation_id="turn:1.a-b")
        assert isinstance(created, TaskCreated)
        async with database.sessionmaker() as session:
            payload = await session.scalar(
                select(OutboxMessage.payload).where(OutboxMessage.correlation_id == "turn:1.a-b")
            )
            await session.execute(delete(OutboxMessage))
            await session.commit()
        message = rendered.pop()
        assert isinstance(message, EngineeringMessage)
        assert message.task_id == created.id
        payloads.append((payload, message.model_copy(update={"user_id": owner}).model_dump_json()))
    assert [written == expected for written, expected in payloads] == [True, True], payloads


async def test_a_statement_the_server_refuses_falls_back_and_writes_nothing(
    database: Database,
) -> None:
    """PostgreSQL: the call of the function refused by the server (here a correlation id
    longer than its column: the route never sends one) is rolled back with its statement:
    `UNAVAILABLE`, counted; its connection is reused, the next creates work."""
    if database.is_sqlite:
        pytest.skip("PostgreSQL's engineering create in one call")
    project = await new_project(database, await new_user(database), parallel_tasks=5)
    body = TaskCreate(project_id=project, type=TaskType.ENGINEERING)
    assert await directly(database, ADMIN, body, correlation_id="x" * 65) is UNAVAILABLE
    assert database.direct.fallbacks == 1
    assert (await count(database, Task), await count(database, OutboxMessage)) == (0, 0)
    for _ in range(database.direct.max_size + 2):
        assert isinstance(await directly(database, ADMIN, body), TaskCreated)
    assert await count(database, Task) == database.direct.max_size + 2
    assert database.direct.fallbacks == 1


@contextlib.asynccontextmanager
async def blocked_create(
    database: Database, project: str
) -> AsyncIterator[tuple[asyncio.Task[TaskCreated | Unavailable], asyncpg.Connection, int]]:
    """A direct engineering create waiting on the server for the project's row, which
    another transaction (the connection given, open until the end) holds locked; and the
    create's server process id. At the end the lock is released and the create has ended."""
    dsn = database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    blocker = await asyncpg.connect(dsn)
    running = None
    try:
        await blocker.execute("BEGIN")
        await blocker.execute("SELECT 1 FROM projects WHERE id = $1 FOR UPDATE", project)
        running = asyncio.create_task(
            directly(database, ADMIN, TaskCreate(project_id=project, type=TaskType.ENGINEERING))
        )
        monitor = await asyncpg.connect(dsn)  # outside the blocker's snapshot
        try:
            for _ in range(500):
                pid = await monitor.fetchval(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND query LIKE '%create_engineering_task(%'"
                )
                if pid is not None:
                    break
                await asyncio.sleep(0.01)
        finally:
            await monitor.close()
        assert pid is not None, "the create did not wait for the lock in the function"
        yield running, blocker, int(pid)
    finally:
        await blocker.close()
        if running is not None:
            await asyncio.wait([running])


async def test_a_create_whose_connection_is_lost_fails_and_is_not_retried(
    database: Database,
) -> None:
    """PostgreSQL: the connection lost during the call (its server process terminated
    while it waits for the project's lock): the create fails, not done again through the
    session (a call cut off later could have committed); the next creates work."""
    if database.is_sqlite:
        pytest.skip("PostgreSQL's engineering create in one call")
    project = await new_project(database, await new_user(database))
    async with blocked_create(database, project) as (running, blocker, pid):
        await blocker.execute("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(asyncpg.PostgresConnectionError):
            await running
    assert database.direct.fallbacks == 0
    assert await count(database, Task) == 0
    other = await new_project(database, await new_user(database), parallel_tasks=9)
    for _ in range(database.direct.max_size + 2):
        created = await directly(
            database, ADMIN, TaskCreate(project_id=other, type=TaskType.ENGINEERING)
        )
        assert isinstance(created, TaskCreated)


async def test_a_create_cancelled_during_the_call_propagates_and_is_not_retried(
    database: Database,
) -> None:
    """PostgreSQL: cancelled while the call runs on the server, the create raises
    `CancelledError` (no fallback: whether it committed is not known to the API), its
    connection is not handed back to the pool, and the next creates work."""
    if database.is_sqlite:
        pytest.skip("PostgreSQL's engineering create in one call")
    project = await new_project(database, await new_user(database))
    async with blocked_create(database, project) as (running, _, _):
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert database.direct.fallbacks == 0
    other = await new_project(database, await new_user(database), parallel_tasks=9)
    for _ in range(database.direct.max_size + 2):
        created = await directly(
            database, ADMIN, TaskCreate(project_id=other, type=TaskType.ENGINEERING)
        )
        assert isinstance(created, TaskCreated)
