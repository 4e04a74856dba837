"""The batch paths: publishing many in one script call, a consumer that is behind reading and
acknowledging with one non-blocking script, and the acknowledgement queue."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import structlog

from shared import registry
from shared.messaging import Bus, MessageContext, Metrics
from shared.messaging.envelope import new_message_ids
from shared.messaging.redis_transport import RedisTransport
from shared.messaging.transport import AckBatch, Entry, TransportConnectionError
from shared.registry import Actor
from tests.support.messaging import Running, engineering, read_entries
from tests.support.waiting import eventually

ENGINEERING = registry.get("engineering:queue").name
SCAFFOLDER = registry.get("scaffolder:queue").name


def test_message_ids_are_distinct_version_4_uuids() -> None:
    """Ids made from one read of randomness are valid, distinct UUID4 strings."""
    ids = new_message_ids(2_000)
    parsed = [uuid.UUID(text) for text in ids]
    assert [str(u) for u in parsed] == ids
    assert {u.version for u in parsed} == {4}
    assert {u.variant for u in parsed} == {uuid.RFC_4122}
    assert len(set(ids)) == len(ids)


async def test_add_many_keeps_order_across_streams_field_layouts_and_chunks(
    redis_client: aioredis.Redis,
) -> None:
    """2,500 entries over two streams, one with other fields: ids in order, fields as given."""
    transport = RedisTransport(redis_client)
    items: list[tuple[str, dict[str, str]]] = [
        ("s:a" if i % 3 else "s:b", {"meta": f"m{i}", "payload": f"p{i}"}) for i in range(2_500)
    ]
    items.insert(1_200, ("s:a", {"only": "odd one", "é": "ünïcode"}))
    ids = await transport.add_many(items)
    assert len(ids) == len(items)
    stored = {
        (stream, entry_id): fields
        for stream in ("s:a", "s:b")
        for entry_id, fields in await read_entries(redis_client, stream)
    }
    assert [stored[(s, i)] for (s, _), i in zip(items, ids, strict=True)] == [
        fields for _, fields in items
    ]
    for stream in ("s:a", "s:b"):
        expected = [i for i, (s, _) in zip(ids, items, strict=True) if s == stream]
        assert [i for i, _ in await read_entries(redis_client, stream)] == expected


async def test_a_consumer_behind_handles_every_message_once_and_deletes_it(
    bus: Bus, redis_client: aioredis.Redis, metrics: Metrics
) -> None:
    """A backlog of 750 read in full batches: each handled once, all acked, deleted, counted."""
    await bus.publish_many([(ENGINEERING, engineering(f"t-{i}")) for i in range(750)])
    handled: list[str] = []

    async def handle(message: Any, ctx: MessageContext) -> None:
        handled.append(message.task_id)

    async with Running(bus.consumer(ENGINEERING, handle, concurrency=100, block_ms=100)):
        await eventually(lambda: len(handled) == 750)
        await eventually(lambda: _xlen(redis_client, ENGINEERING, 0))
    assert sorted(handled) == sorted(f"t-{i}" for i in range(750))
    assert (await redis_client.xpending(ENGINEERING, "langgraph"))["pending"] == 0
    processed = metrics.processed.labels(ENGINEERING, "langgraph", "EngineeringMessage")
    assert processed._value.get() == 750


async def test_the_batch_read_keeps_entries_a_second_required_group_still_needs(
    redis_client: aioredis.Redis, metrics: Metrics
) -> None:
    """Acked through the batch script with another required group behind: kept, not deleted."""
    bus = Bus(redis_client, actor=Actor.LANGGRAPH, metrics=metrics)
    await redis_client.xgroup_create(ENGINEERING, "audit", id="0", mkstream=True)
    await bus.publish_many([(ENGINEERING, engineering(f"t-{i}")) for i in range(40)])
    handled: list[str] = []

    async def handle(message: Any, ctx: MessageContext) -> None:
        handled.append(message.task_id)

    consumer = bus.consumer(
        ENGINEERING, handle, concurrency=10, block_ms=100, required_groups=["audit"]
    )
    async with Running(consumer):
        await eventually(lambda: len(handled) == 40)
        await eventually(lambda: _pending(redis_client, "langgraph", 0))
    assert await redis_client.xlen(ENGINEERING) == 40


class FlakyReads:
    """A transport whose batch read (which carries the acknowledgements) fails `failures`
    times with a lost connection; everything else goes to the real one."""

    def __init__(self, real: RedisTransport, failures: int) -> None:
        self.real = real
        self.failures = failures
        self.failed_acks: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def read_group_now(
        self,
        group: str,
        consumer: str,
        streams: Sequence[str],
        *,
        count: int,
        acks: Sequence[AckBatch] = (),
    ) -> list[Entry]:
        if self.failures and acks:
            self.failures -= 1
            self.failed_acks.extend(i for _, ids, _ in acks for i in ids)
            raise TransportConnectionError("connection lost (test)")
        return await self.real.read_group_now(group, consumer, streams, count=count, acks=acks)


async def test_acknowledgements_lost_with_the_connection_are_sent_again(
    redis_client: aioredis.Redis, metrics: Metrics
) -> None:
    """Acks whose send failed are kept and sent later: every entry deleted, counted once."""
    flaky = FlakyReads(RedisTransport(redis_client), failures=2)
    bus = Bus(actor=Actor.LANGGRAPH, transport=flaky, metrics=metrics)
    await bus.publish_many([(ENGINEERING, engineering(f"t-{i}")) for i in range(30)])
    handled: list[str] = []

    async def handle(message: Any, ctx: MessageContext) -> None:
        handled.append(message.task_id)

    async with Running(bus.consumer(ENGINEERING, handle, concurrency=10, block_ms=100)):
        await eventually(lambda: _xlen(redis_client, ENGINEERING, 0))
    assert flaky.failures == 0
    assert flaky.failed_acks
    assert sorted(handled) == sorted(f"t-{i}" for i in range(30))
    processed = metrics.processed.labels(ENGINEERING, "langgraph", "EngineeringMessage")
    assert processed._value.get() == 30


class RefusesAcksOnce:
    """A transport whose first batch read carrying acknowledgements is refused by the server
    (an error other than a lost connection); everything else goes to the real one."""

    def __init__(self, real: RedisTransport) -> None:
        self.real = real
        self.refused: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def read_group_now(
        self,
        group: str,
        consumer: str,
        streams: Sequence[str],
        *,
        count: int,
        acks: Sequence[AckBatch] = (),
    ) -> list[Entry]:
        if acks and not self.refused:
            self.refused.extend(i for _, ids, _ in acks for i in ids)
            raise RuntimeError("ERR script refused (test)")
        return await self.real.read_group_now(group, consumer, streams, count=count, acks=acks)


async def test_acknowledgements_the_server_refuses_do_not_stall_the_consumer(
    redis_client: aioredis.Redis, metrics: Metrics
) -> None:
    """Refused acks are dropped, not retried with every read: the consumer goes on, and their
    entries, left pending, are reclaimed and handled again (at least once)."""
    refusing = RefusesAcksOnce(RedisTransport(redis_client))
    bus = Bus(actor=Actor.LANGGRAPH, transport=refusing, metrics=metrics)
    await bus.publish_many([(ENGINEERING, engineering(f"t-{i}")) for i in range(20)])
    handled: list[str] = []

    async def handle(message: Any, ctx: MessageContext) -> None:
        handled.append(message.task_id)

    consumer = bus.consumer(ENGINEERING, handle, concurrency=5, block_ms=100, reclaim_idle_ms=300)
    async with Running(consumer):
        await eventually(lambda: bool(refusing.refused))
        await bus.publish_many([(ENGINEERING, engineering(f"late-{i}")) for i in range(5)])
        await eventually(lambda: _xlen(redis_client, ENGINEERING, 0))
        await eventually(lambda: _pending(redis_client, "langgraph", 0))
    assert set(handled) == {f"t-{i}" for i in range(20)} | {f"late-{i}" for i in range(5)}
    assert len(handled) == 25 + len(refusing.refused)


class CountedReads:
    """A transport that counts the consumer's reads; everything goes to the real one."""

    def __init__(self, real: RedisTransport) -> None:
        self.real = real
        self.reads = 0
        self.blocking = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def read_group(
        self, group: str, consumer: str, streams: Sequence[str], *, count: int, block_ms: int
    ) -> list[Entry]:
        self.reads += 1
        self.blocking = True
        try:
            return await self.real.read_group(
                group, consumer, streams, count=count, block_ms=block_ms
            )
        finally:
            self.blocking = False

    async def read_group_now(
        self,
        group: str,
        consumer: str,
        streams: Sequence[str],
        *,
        count: int,
        acks: Sequence[AckBatch] = (),
    ) -> list[Entry]:
        self.reads += 1
        return await self.real.read_group_now(group, consumer, streams, count=count, acks=acks)


async def test_a_handler_finishing_during_a_blocking_read_is_acknowledged_at_once(
    redis_client: aioredis.Redis, metrics: Metrics
) -> None:
    """While the read loop blocks, a finished handler's ack is sent without waiting for the
    next read: the entry is gone before the loop reads again."""
    counted = CountedReads(RedisTransport(redis_client))
    bus = Bus(actor=Actor.LANGGRAPH, transport=counted, metrics=metrics)
    release = asyncio.Event()

    async def handle(message: Any, ctx: MessageContext) -> None:
        await release.wait()

    await bus.publish(ENGINEERING, engineering())
    consumer = bus.consumer(ENGINEERING, handle, concurrency=4, block_ms=2_000)
    async with Running(consumer):
        await eventually(lambda: len(consumer.inflight) == 1 and counted.blocking)
        reads = counted.reads
        release.set()
        await eventually(lambda: _xlen(redis_client, ENGINEERING, 0))
        assert (counted.reads, counted.blocking) == (reads, True)  # still that same read
    assert (await redis_client.xpending(ENGINEERING, "langgraph"))["pending"] == 0


def test_blocking_reads_stay_below_the_clients_default_socket_timeout() -> None:
    """A client built without a socket timeout still has redis-py's default one (5 s): reads
    block at most half a second less, so they never time out in the client."""
    default_client = aioredis.Redis.from_url("redis://127.0.0.1:1/0")
    unbounded = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_timeout=None)
    assert RedisTransport(default_client).max_block_ms == 4_500
    assert RedisTransport(unbounded).max_block_ms is None


async def test_handlers_see_their_own_message_in_the_log_context(bus: Bus) -> None:
    """structlog's context holds each handled message's correlation id, queue, type, attempt
    and entry id, and no other message's."""
    seen: list[dict[str, Any]] = []

    async def handle(message: Any, ctx: MessageContext) -> None:
        await asyncio.sleep(0)
        bound = structlog.contextvars.get_contextvars()
        seen.append(
            {key: bound.get(key) for key in ("correlation_id", "queue", "type", "entry_id")}
        )
        seen[-1]["attempt"] = bound.get("attempt")
        seen[-1]["own"] = (ctx.correlation_id, ctx.entry_id)

    messages = [engineering(f"t-{i}") for i in range(5)]
    await bus.publish_many([(ENGINEERING, m) for m in messages])
    async with Running(bus.consumer(ENGINEERING, handle, concurrency=5, block_ms=100)):
        await eventually(lambda: len(seen) == 5)
    for row in seen:
        assert (row["correlation_id"], row["entry_id"]) == row["own"]
        assert (row["queue"], row["type"], row["attempt"]) == (
            ENGINEERING,
            "EngineeringMessage",
            1,
        )
    assert sorted(r["correlation_id"] for r in seen) == sorted(m.correlation_id for m in messages)
    assert structlog.contextvars.get_contextvars().get("correlation_id") is None


def ctx_ids(ctx: MessageContext) -> tuple[str, str]:
    return ctx.correlation_id, ctx.entry_id


async def _xlen(client: aioredis.Redis, stream: str, expected: int) -> bool:
    return int(await client.xlen(stream)) == expected


async def _pending(client: aioredis.Redis, group: str, expected: int) -> bool:
    summary: Any = await client.xpending(ENGINEERING, group)
    return int(summary["pending"]) == expected
