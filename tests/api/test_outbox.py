"""The outbox relay: every committed task message reaches its queue, once Redis is there."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest
import redis.asyncio as aioredis
from sqlalchemy import event, select

from services.api.db import Database
from services.api.direct import UNAVAILABLE, Unavailable
from services.api.outbox.models import OutboxMessage
from services.api.outbox.relay import OutboxRelay
from shared import registry
from shared.api_client.schemas import ProjectUpdate
from shared.contracts import EngineeringMessage, ProjectCreate, TaskCreate, TaskType
from shared.messaging import Bus, Envelope, decode_message
from shared.messaging.envelope import envelope_fields
from shared.redis_server import RedisServer
from tests.support.api import ApiHarness
from tests.support.waiting import eventually

ENGINEERING = registry.get("engineering:queue")
DEPLOY = registry.get("deploy:queue")


async def create_tasks(api: ApiHarness, count: int, task_type: TaskType) -> list[str]:
    """`count` tasks of one type in a fresh project that runs them all at once (task order
    would hold back all engineering tasks but the first); returns their ids in order."""
    user_id, _ = await api.user(1000 + count)
    async with api.client(api.admin_key) as admin:
        project = await admin.create_project(ProjectCreate(name="p"), owner_id=user_id)
        await admin.update_project(project.id, ProjectUpdate(parallel_tasks=count))
        return [
            (await admin.create_task(TaskCreate(project_id=project.id, type=task_type))).id
            for _ in range(count)
        ]


async def stream_messages(client: aioredis.Redis, stream: str) -> list[tuple[Envelope, object]]:
    """Every entry of a stream, decoded with the messaging runtime."""
    spec = registry.resolve(stream)
    out: list[tuple[Envelope, object]] = []
    for _entry_id, fields in await client.xrange(stream) or []:
        envelope = Envelope.from_fields(envelope_fields(fields or {}))
        out.append((envelope, decode_message(spec, envelope)))
    return out


async def has_entries(client: aioredis.Redis, stream: str, count: int) -> bool:
    """True once `stream` holds at least `count` entries."""
    return int(await client.xlen(stream)) >= count


async def none_pending(database: Database) -> bool:
    """True once every outbox row is published."""
    return not await pending_rows(database)


async def pending_rows(database: Database) -> list[OutboxMessage]:
    """Outbox rows not yet published."""
    async with database.sessionmaker() as session:
        query = select(OutboxMessage).where(OutboxMessage.published_at.is_(None))
        return list((await session.scalars(query)).all())


async def test_relay_publishes_each_message_once_in_order(
    api: ApiHarness, redis_client: aioredis.Redis
) -> None:
    """Committed rows go to their queues, typed, with the task's correlation id, once."""
    engineering = await create_tasks(api, 3, TaskType.ENGINEERING)
    deploy = await create_tasks(api, 1, TaskType.DEPLOY)
    relay = OutboxRelay(api.database, Bus(redis_client, actor=registry.Actor.API))
    assert await relay.publish_pending() == 4
    assert await relay.publish_pending() == 0
    sent = await stream_messages(redis_client, ENGINEERING.name)
    assert [m.task_id for _, m in sent if isinstance(m, EngineeringMessage)] == engineering
    assert all(env.correlation_id == msg.correlation_id for env, msg in sent)  # type: ignore[attr-defined]
    assert [m.task_id for _, m in await stream_messages(redis_client, DEPLOY.name)] == deploy  # type: ignore[attr-defined]
    assert await pending_rows(api.database) == []


async def test_relay_wakes_on_commit(api: ApiHarness, redis_client: aioredis.Redis) -> None:
    """A running relay publishes a new task's message right after the request commits."""
    wake = asyncio.Event()
    api.app.state.relay_wake = wake  # type: ignore[attr-defined]
    relay = OutboxRelay(
        api.database, Bus(redis_client, actor=registry.Actor.API), wake=wake, poll_s=30
    )
    running = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.1)  # the relay is now waiting (poll every 30 s)
        [task_id] = await create_tasks(api, 1, TaskType.ENGINEERING)
        await eventually(lambda: none_pending(api.database), timeout_s=10, interval_s=0.02)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    [(_, message)] = await stream_messages(redis_client, ENGINEERING.name)
    assert message.task_id == task_id  # type: ignore[attr-defined]


async def test_tasks_created_while_redis_is_down_are_published_when_it_is_back(
    api: ApiHarness,
) -> None:
    """With Redis stopped, tasks are still created; the relay publishes them all once back."""
    server = RedisServer().start()
    client: aioredis.Redis = aioredis.Redis.from_url(server.url)
    relay = OutboxRelay(
        api.database,
        Bus(client, actor=registry.Actor.API, publish_attempts=1),
        poll_s=0.1,
        max_backoff_s=0.3,
    )
    running = asyncio.create_task(relay.run())
    try:
        server.stop()
        created = await create_tasks(api, 5, TaskType.ENGINEERING)
        await asyncio.sleep(1.0)
        rows = await pending_rows(api.database)
        assert len(rows) == 5
        assert rows[0].attempts >= 1
        assert rows[0].last_error
        server.start()
        await eventually(lambda: none_pending(api.database), timeout_s=15)
        sent = await stream_messages(client, ENGINEERING.name)
        assert [m.task_id for _, m in sent] == created  # type: ignore[attr-defined]
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await client.aclose()
        server.cleanup()


async def test_a_relay_cancelled_at_any_instant_stops_and_loses_nothing(
    api: ApiHarness, redis_client: aioredis.Redis
) -> None:
    """Cancelled mid-publish (redis-py may absorb the cancellation there), a relay still stops,
    and every task's message reaches its queue after all."""
    created = await create_tasks(api, 40, TaskType.ENGINEERING)
    rng = random.Random(11)
    for attempt in range(40):
        relay = OutboxRelay(
            api.database, Bus(redis_client, actor=registry.Actor.API), poll_s=0.0, batch_size=1
        )
        running = asyncio.create_task(relay.run())
        await asyncio.sleep(rng.uniform(0, 0.02))
        running.cancel()
        _, stuck = await asyncio.wait([running], timeout=5)
        assert not stuck, f"relay {attempt} went on after its cancellation"
    final = OutboxRelay(api.database, Bus(redis_client, actor=registry.Actor.API))
    while await final.publish_pending():
        pass
    sent = await stream_messages(redis_client, ENGINEERING.name)
    assert {m.task_id for _, m in sent} == set(created)  # type: ignore[attr-defined]


async def all_rows(database: Database) -> int:
    """Outbox rows, published or not."""
    async with database.sessionmaker() as session:
        return len((await session.scalars(select(OutboxMessage))).all())


async def test_published_rows_are_purged_at_most_once_per_interval(
    api: ApiHarness, redis_client: aioredis.Redis
) -> None:
    """A batch deletes the rows published over `retention_s` ago only when `purge_every_s`
    passed since the last purge: the rows of a batch soon after stay, the next purge after
    the interval takes them; pending rows are never purged."""
    relay = OutboxRelay(
        api.database,
        Bus(redis_client, actor=registry.Actor.API),
        retention_s=0,
        purge_every_s=0.5,
    )
    await create_tasks(api, 2, TaskType.DEPLOY)
    assert await relay.publish_pending() == 2  # the first batch purges (its own rows too)
    assert await all_rows(api.database) == 0
    await create_tasks(api, 3, TaskType.DEPLOY)
    assert await relay.publish_pending() == 3
    assert await all_rows(api.database) == 3  # published, kept until the next purge
    await asyncio.sleep(0.6)
    await create_tasks(api, 1, TaskType.DEPLOY)
    assert len(await pending_rows(api.database)) == 1
    assert await relay.publish_pending() == 1
    assert await all_rows(api.database) == 0
    assert len(await redis_client.xrange(DEPLOY.name) or []) == 6


async def test_a_batch_is_published_in_one_round_trip_each_row_with_its_correlation(
    api: ApiHarness, redis_client: aioredis.Redis
) -> None:
    """Every pending row of a batch goes to Redis in one `add_many` (no single `add`), each
    with its own task's correlation id, in order; the relay counts the batch."""
    engineering = await create_tasks(api, 3, TaskType.ENGINEERING)
    deploy = await create_tasks(api, 2, TaskType.DEPLOY)
    bus = Bus(redis_client, actor=registry.Actor.API)
    transport = bus.publisher.transport
    calls: list[str] = []
    add_many, add = transport.add_many, transport.add

    async def counted_add_many(*args: object, **kwargs: object) -> list[str]:
        calls.append("add_many")
        return await add_many(*args, **kwargs)  # type: ignore[arg-type]

    async def counted_add(*args: object, **kwargs: object) -> str:
        calls.append("add")
        return await add(*args, **kwargs)  # type: ignore[arg-type]

    transport.add_many = counted_add_many  # type: ignore[method-assign]
    transport.add = counted_add  # type: ignore[method-assign]
    relay = OutboxRelay(api.database, bus)
    assert await relay.publish_pending() == 5
    assert calls == ["add_many"]
    assert (relay.published, relay.batches) == (5, 1)
    assert await relay.publish_pending() == 0
    assert relay.batches == 1  # an empty batch is no round trip
    sent = await stream_messages(redis_client, ENGINEERING.name)
    assert [m.task_id for _, m in sent] == engineering  # type: ignore[attr-defined]
    assert [m.task_id for _, m in await stream_messages(redis_client, DEPLOY.name)] == deploy  # type: ignore[attr-defined]
    async with api.database.sessionmaker() as session:
        rows = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
    correlations = {row.correlation_id for row in rows}
    assert len(correlations) == 5  # each task its own
    published = await stream_messages(redis_client, ENGINEERING.name) + await stream_messages(
        redis_client, DEPLOY.name
    )
    assert {env.correlation_id for env, _ in published} == correlations


async def test_a_row_that_does_not_decode_ends_the_batch_before_it(
    api: ApiHarness, redis_client: aioredis.Redis
) -> None:
    """The rows before a broken row are published and marked; the broken row records its
    error and stays pending, with the rows after it, and the relay raises; the same again
    on the next batch (the order of the stream is kept)."""
    first = await create_tasks(api, 2, TaskType.ENGINEERING)
    async with api.database.sessionmaker() as session:
        broken = OutboxMessage(
            stream=ENGINEERING.name,
            message_type="NoSuchMessage",
            payload="{}",
            correlation_id="broken",
        )
        session.add(broken)
        await session.commit()
        broken_id = broken.id
    after = await create_tasks(api, 1, TaskType.ENGINEERING)
    relay = OutboxRelay(api.database, Bus(redis_client, actor=registry.Actor.API))
    for attempt in (1, 2):
        try:
            await relay.publish_pending()
        except registry.WrongMessageTypeError:
            pass
        else:
            raise AssertionError("the broken row did not fail its batch")
        pending = await pending_rows(api.database)
        assert pending[0].id == broken_id
        assert len(pending) == 2  # the broken row and the task created after it
        assert pending[0].attempts == attempt
        assert "NoSuchMessage" in (pending[0].last_error or "")
    sent = await stream_messages(redis_client, ENGINEERING.name)
    assert [m.task_id for _, m in sent] == first  # type: ignore[attr-defined]
    assert after[0] not in {m.task_id for _, m in sent}  # type: ignore[attr-defined]
    assert relay.batches == 1


async def test_a_batch_runs_on_the_direct_connections_not_a_session(
    api: ApiHarness, redis_client: aioredis.Redis
) -> None:
    """Past its first batch (which purges), a batch is the SELECT of the pending rows and
    one UPDATE for them, run on the direct connections (`direct.py`): no session statement."""
    relay = OutboxRelay(api.database, Bus(redis_client, actor=registry.Actor.API))
    await create_tasks(api, 1, TaskType.DEPLOY)
    assert await relay.publish_pending() == 1  # the first purge
    await create_tasks(api, 3, TaskType.DEPLOY)
    engine: list[str] = []
    direct: list[str] = []

    def on_execute(*args: object) -> None:
        engine.append(str(args[2]))

    sync_engine = api.database.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", on_execute)
    api.database.direct.listeners.append(direct.append)
    try:
        assert await relay.publish_pending() == 3
    finally:
        api.database.direct.listeners.remove(direct.append)
        event.remove(sync_engine, "before_cursor_execute", on_execute)
    assert engine == []
    assert [sql.split()[0] for sql in direct] == ["SELECT", "UPDATE"]
    assert await pending_rows(api.database) == []
    assert api.database.direct.fallbacks == 0


async def test_without_the_direct_path_a_batch_goes_through_a_session(
    api: ApiHarness, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the direct path cannot answer (its reads and writes `UNAVAILABLE`), the relay
    publishes and marks its batch through a session: every row once, none left pending."""
    created = await create_tasks(api, 3, TaskType.ENGINEERING)
    direct = api.database.direct

    async def unavailable(*_args: object, **_kwargs: object) -> Unavailable:
        return UNAVAILABLE

    monkeypatch.setattr(direct, "fetch_all", unavailable)
    monkeypatch.setattr(direct, "write", unavailable)
    relay = OutboxRelay(api.database, Bus(redis_client, actor=registry.Actor.API))
    assert await relay.publish_pending() == 3
    assert await relay.publish_pending() == 0
    assert await pending_rows(api.database) == []
    sent = await stream_messages(redis_client, ENGINEERING.name)
    assert [m.task_id for _, m in sent] == created  # type: ignore[attr-defined]


async def test_on_sqlite_a_mark_that_cannot_be_written_directly_goes_through_a_session(
    api: ApiHarness, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite reads the batch directly, publishes it, and marks it in a direct write; when
    that write is `UNAVAILABLE` (another process holds the lock), the rows published are
    marked through a session: not published twice."""
    if not api.database.is_sqlite:
        pytest.skip("SQLite's batch: read, publish, then mark")
    created = await create_tasks(api, 2, TaskType.DEPLOY)

    async def unavailable(*_args: object, **_kwargs: object) -> Unavailable:
        return UNAVAILABLE

    monkeypatch.setattr(api.database.direct, "write", unavailable)
    relay = OutboxRelay(api.database, Bus(redis_client, actor=registry.Actor.API))
    assert await relay.publish_pending() == 2
    assert await relay.publish_pending() == 0
    assert [m.task_id for _, m in await stream_messages(redis_client, DEPLOY.name)] == created  # type: ignore[attr-defined]
