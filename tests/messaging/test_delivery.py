"""Delivery guarantees on real Redis: leases, reclaim, trimming, duplicates, shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import redis.asyncio as aioredis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shared import registry
from shared.messaging import Bus, Envelope, MessageContext, Metrics, Retry
from shared.messaging.envelope import envelope_fields
from shared.registry import Actor
from tests.support.messaging import Running, engineering, read_entries
from tests.support.waiting import eventually

ENGINEERING = registry.get("engineering:queue").name


async def test_long_handler_keeps_its_lease_and_is_not_run_twice(
    redis_client: aioredis.Redis, metrics: Metrics
) -> None:
    """A handler running 4x the reclaim idle time is not handed to a second live consumer."""
    runs: list[str] = []

    async def slow(message: Any, ctx: MessageContext) -> None:
        runs.append(ctx.consumer)
        await asyncio.sleep(1.2)

    first = Bus(redis_client, actor=Actor.LANGGRAPH, consumer_name="first", metrics=metrics)
    second = Bus(redis_client, actor=Actor.LANGGRAPH, consumer_name="second", metrics=metrics)
    options: dict[str, Any] = {"reclaim_idle_ms": 300, "block_ms": 100}
    await first.publish(ENGINEERING, engineering())
    # concurrency=1: the busy first consumer does not reclaim at all, only its lease keeps it
    async with Running(first.consumer(ENGINEERING, slow, concurrency=1, **options)):
        await eventually(lambda: len(runs) == 1)
        async with Running(second.consumer(ENGINEERING, slow, **options)):
            await asyncio.sleep(1.5)
    assert runs == ["first"]
    assert await redis_client.xlen(ENGINEERING) == 0


async def test_dead_consumers_entries_are_reclaimed_after_the_idle_time(
    redis_client: aioredis.Redis, metrics: Metrics
) -> None:
    """Entries read by a consumer that then vanished are claimed by another and handled."""
    await redis_client.xgroup_create(ENGINEERING, "langgraph", id="0", mkstream=True)
    bus = Bus(redis_client, actor=Actor.LANGGRAPH, consumer_name="alive", metrics=metrics)
    await bus.publish_many([(ENGINEERING, engineering(f"t-{i}")) for i in range(3)])
    await redis_client.xreadgroup("langgraph", "dead", {ENGINEERING: ">"}, count=3)
    handled: list[tuple[str, int]] = []

    async def handle(message: Any, ctx: MessageContext) -> None:
        handled.append((message.task_id, ctx.attempt))

    async with Running(bus.consumer(ENGINEERING, handle, reclaim_idle_ms=200, block_ms=100)):
        await eventually(lambda: len(handled) == 3)
    assert sorted(handled) == [("t-0", 2), ("t-1", 2), ("t-2", 2)]


async def test_an_entry_deleted_while_pending_is_dropped_on_reclaim(
    redis_client: aioredis.Redis, metrics: Metrics
) -> None:
    """A dead consumer's pending entries, one deleted meanwhile: the others are handled, the
    deleted one never reaches the handler and leaves the pending list (XAUTOCLAIM answers
    differently on 6.2 and 7.0)."""
    await redis_client.xgroup_create(ENGINEERING, "langgraph", id="0", mkstream=True)
    bus = Bus(redis_client, actor=Actor.LANGGRAPH, consumer_name="alive", metrics=metrics)
    ids = await bus.publish_many([(ENGINEERING, engineering(f"t-{i}")) for i in range(3)])
    await redis_client.xreadgroup("langgraph", "dead", {ENGINEERING: ">"}, count=3)
    await redis_client.xdel(ENGINEERING, ids[1])
    handled: list[str] = []

    async def handle(message: Any, ctx: MessageContext) -> None:
        handled.append(message.task_id)

    async with Running(bus.consumer(ENGINEERING, handle, reclaim_idle_ms=200, block_ms=100)):
        await eventually(lambda: len(handled) == 2)
        await eventually(lambda: _pending(redis_client, 0))
    assert sorted(handled) == ["t-0", "t-2"]
    assert await redis_client.xlen(ENGINEERING) == 0


async def test_an_entry_deleted_while_its_retry_waits_leaves_the_pending_list(
    redis_client: aioredis.Redis, bus: Bus
) -> None:
    """A handler asks for a retry; the entry is deleted before it comes due: no second
    attempt, and nothing stays pending."""
    attempts: list[int] = []

    async def handle(message: Any, ctx: MessageContext) -> None:
        attempts.append(ctx.attempt)
        raise Retry("later", delay_s=0.3)

    entry_id = await bus.publish(ENGINEERING, engineering())
    async with Running(bus.consumer(ENGINEERING, handle, block_ms=100)):
        await eventually(lambda: attempts == [1])
        await redis_client.xdel(ENGINEERING, entry_id)
        await eventually(lambda: _pending(redis_client, 0))
    assert attempts == [1]


async def _pending(client: aioredis.Redis, expected: int) -> bool:
    summary: Any = await client.xpending(ENGINEERING, "langgraph")
    return int(summary["pending"]) == expected


async def test_entry_delivered_too_often_is_dead_lettered_on_reclaim(
    redis_client: aioredis.Redis, bus: Bus
) -> None:
    """A message that keeps killing its consumers (never acked) dies after max_attempts."""
    await redis_client.xgroup_create(ENGINEERING, "langgraph", id="0", mkstream=True)
    entry_id = await bus.publish(ENGINEERING, engineering("killer"))
    await redis_client.xreadgroup("langgraph", "dead", {ENGINEERING: ">"})
    for _ in range(2):
        await redis_client.xclaim(ENGINEERING, "langgraph", "dead", 0, [entry_id])

    async def handle(message: Any, ctx: MessageContext) -> None:
        raise AssertionError("must not be handled again")

    dead = registry.dead_letter_stream(ENGINEERING)
    async with Running(bus.consumer(ENGINEERING, handle, max_attempts=3, reclaim_idle_ms=150)):
        await eventually(lambda: _xlen(redis_client, dead, 1))
    [letter] = await bus.dead_letters(ENGINEERING)
    assert (letter.reason, letter.attempts, letter.source_entry_id) == ("exhausted", 4, entry_id)


async def _xlen(client: aioredis.Redis, stream: str, expected: int) -> bool:
    return int(await client.xlen(stream)) == expected


async def test_trimming_never_removes_an_entry_a_required_group_has_not_acked(
    redis_client: aioredis.Redis, bus: Bus
) -> None:
    """With a second required group behind, handled entries stay (ack, trim); once that group
    acknowledges them too they are deleted."""
    await redis_client.xgroup_create(ENGINEERING, "audit", id="0", mkstream=True)
    await bus.publish_many([(ENGINEERING, engineering(f"t-{i}")) for i in range(10)])
    required = ("langgraph", "audit")
    seen: list[str] = []

    async def handle(message: Any, ctx: MessageContext) -> None:
        seen.append(ctx.group)

    main = bus.consumer(ENGINEERING, handle, required_groups=required, block_ms=100)
    async with Running(main):
        await eventually(lambda: len(seen) == 10)
        await main.upkeep.trim()
    assert await redis_client.xlen(ENGINEERING) == 10
    # the audit group reads half and does not acknowledge: still nothing may go
    await redis_client.xreadgroup("audit", "slow", {ENGINEERING: ">"}, count=5)
    await main.upkeep.trim()
    assert await redis_client.xlen(ENGINEERING) == 10
    audit = bus.consumer(
        ENGINEERING, handle, group="audit", required_groups=required, reclaim_idle_ms=200
    )
    async with Running(audit):
        await eventually(lambda: len(seen) == 20)
        await eventually(lambda: _xlen(redis_client, ENGINEERING, 0))


async def test_stalled_observer_pins_at_most_its_cap(
    redis_client: aioredis.Redis, bus: Bus
) -> None:
    """An observer group that never reads keeps only the newest `observer_cap` entries."""
    spec = dataclasses.replace(registry.get(ENGINEERING), observers=(Actor.SCHEDULER,))
    await redis_client.xgroup_create(ENGINEERING, "scheduler", id="0", mkstream=True)
    await bus.publish_many([(ENGINEERING, engineering(f"t-{i}")) for i in range(30)])
    seen: list[str] = []

    async def handle(message: Any, ctx: MessageContext) -> None:
        seen.append(message.task_id)

    consumer = bus.consumer(ENGINEERING, handle, observer_cap=5, block_ms=100)
    consumer.specs[ENGINEERING] = spec
    async with Running(consumer):
        await eventually(lambda: len(seen) == 30)
        await consumer.upkeep.trim()
    left = [fields["payload"] for _, fields in await read_entries(redis_client, ENGINEERING)]
    assert len(left) == 5
    assert '"t-29"' in left[-1]


async def test_duplicate_delivery_does_the_idempotent_effect_once(
    redis_client: aioredis.Redis, bus: Bus
) -> None:
    """The same message delivered twice (a duplicate entry) sends its email once."""
    effects: list[str] = []

    async def handle(message: Any, ctx: MessageContext) -> None:
        async with bus.once(message.request_id) as first:
            if first:
                effects.append(message.request_id)

    message = engineering()
    await bus.publish(ENGINEERING, message)
    await bus.publish(ENGINEERING, message)
    async with Running(bus.consumer(ENGINEERING, handle, block_ms=100, concurrency=1)):
        await eventually(lambda: _xlen(redis_client, ENGINEERING, 0))
    assert effects == [message.request_id]


async def test_graceful_stop_finishes_in_flight_handlers(bus: Bus) -> None:
    """stop() lets a running handler finish and acknowledge before run() returns."""
    finished: list[str] = []
    started = asyncio.Event()

    async def handle(message: Any, ctx: MessageContext) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.append(message.task_id)

    await bus.publish(ENGINEERING, engineering("t-1"))
    consumer = bus.consumer(ENGINEERING, handle, block_ms=100)
    task = asyncio.create_task(consumer.run())
    await started.wait()
    consumer.stop()
    await asyncio.wait_for(task, 5)
    assert finished == ["t-1"]
    assert await bus.transport.length(ENGINEERING) == 0


async def test_concurrency_bounds_handlers_in_flight(bus: Bus) -> None:
    """No more than `concurrency` handlers run at once."""
    running = 0
    peak = 0
    done = 0

    async def handle(message: Any, ctx: MessageContext) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        done += 1

    await bus.publish_many([(ENGINEERING, engineering(f"t-{i}")) for i in range(30)])
    async with Running(bus.consumer(ENGINEERING, handle, concurrency=3, block_ms=100)):
        await eventually(lambda: done == 30)
    assert peak == 3


async def test_blocking_reads_respect_the_clients_socket_timeout(redis_url: str) -> None:
    """With socket_timeout below block_ms, the read loop neither errors nor stalls."""
    client = aioredis.Redis.from_url(redis_url, socket_timeout=0.6)
    try:
        bus = Bus(client, actor=Actor.LANGGRAPH)
        handled: list[str] = []

        async def handle(message: Any, ctx: MessageContext) -> None:
            handled.append(message.task_id)

        consumer = bus.consumer(ENGINEERING, handle, block_ms=5_000)
        async with Running(consumer):
            await asyncio.sleep(1.5)  # several idle reads, each would time out at 5 s
            await bus.publish(ENGINEERING, engineering("late"))
            await eventually(lambda: handled == ["late"], timeout_s=3)
    finally:
        await client.aclose()


async def test_spans_link_the_consumer_to_the_publisher(redis_client: aioredis.Redis) -> None:
    """The CONSUMER span is in the publisher's trace and links to its PRODUCER span."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    bus = Bus(redis_client, actor=Actor.LANGGRAPH, tracer_provider=provider)
    handled = asyncio.Event()

    async def handle(message: Any, ctx: MessageContext) -> None:
        assert ctx.envelope.traceparent.startswith("00-")
        handled.set()

    await bus.publish(ENGINEERING, engineering())
    async with Running(bus.consumer(ENGINEERING, handle, block_ms=100)):
        await asyncio.wait_for(handled.wait(), 5)
    spans = {span.kind: span for span in exporter.get_finished_spans()}
    producer, consumer = spans[SpanKind.PRODUCER], spans[SpanKind.CONSUMER]
    assert producer.context is not None
    assert consumer.context is not None
    assert consumer.context.trace_id == producer.context.trace_id
    assert [link.context.span_id for link in consumer.links] == [producer.context.span_id]


async def test_stop_before_run_returns_at_once(bus: Bus) -> None:
    """A consumer stopped before its task first runs does not start consuming forever."""

    async def handle(message: Any, ctx: MessageContext) -> None:
        raise AssertionError("nothing to handle")

    consumer = bus.consumer(ENGINEERING, handle)
    task = asyncio.create_task(consumer.run())
    consumer.stop()
    await asyncio.wait_for(task, 5)


async def test_upkeep_sets_the_pending_and_age_gauges(
    redis_client: aioredis.Redis, bus: Bus, metrics: Metrics
) -> None:
    """Pending count and oldest pending age of the consumer's group reach the gauges."""
    await redis_client.xgroup_create(ENGINEERING, "langgraph", id="0", mkstream=True)
    await bus.publish_many([(ENGINEERING, engineering(f"t-{i}")) for i in range(3)])
    await redis_client.xreadgroup("langgraph", "elsewhere", {ENGINEERING: ">"}, count=2)

    async def handle(message: Any, ctx: MessageContext) -> None:
        await asyncio.sleep(0)

    consumer = bus.consumer(ENGINEERING, handle, block_ms=100)
    async with Running(consumer):
        await eventually(lambda: _xlen(redis_client, ENGINEERING, 2))
        await consumer.upkeep.trim()
    assert metrics.pending.labels(ENGINEERING, "langgraph")._value.get() == 2
    assert metrics.lag.labels(ENGINEERING, "langgraph")._value.get() == 0
    assert metrics.oldest_pending_age_s.labels(ENGINEERING, "langgraph")._value.get() >= 0


async def test_publish_many_gives_each_message_its_correlation_and_trace(
    redis_client: aioredis.Redis,
) -> None:
    """`publish_many` with a correlation id and a parent trace per message (the outbox
    relay's rows come from different requests): each envelope carries its own correlation
    id, and each PRODUCER span is a child in its own message's trace; a message without a
    parent starts a trace of its own."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    bus = Bus(redis_client, actor=Actor.API, tracer_provider=provider)
    parents = [
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        None,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ]
    await bus.publish_many(
        [(ENGINEERING, engineering(f"t-{number}")) for number in range(3)],
        correlation_ids=["c-0", None, "c-2"],
        traceparents=parents,
    )
    entries = await read_entries(redis_client, ENGINEERING)
    envelopes = [Envelope.from_fields(envelope_fields(fields)) for _, fields in entries]
    assert [envelope.correlation_id for envelope in envelopes[::2]] == ["c-0", "c-2"]
    assert envelopes[1].correlation_id not in ("c-0", "c-2", "")
    spans = [span for span in exporter.get_finished_spans() if span.kind == SpanKind.PRODUCER]
    assert len(spans) == 3
    traces = [f"{span.context.trace_id:032x}" for span in spans if span.context is not None]
    assert traces[0] == "0af7651916cd43dd8448eb211c80319c"
    assert traces[2] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert traces[1] not in (traces[0], traces[2])
    assert [span.parent.span_id if span.parent else None for span in spans][::2] == [
        0xB7AD6B7169203331,
        0x00F067AA0BA902B7,
    ]
    for envelope, trace in zip(envelopes, traces, strict=True):
        assert envelope.traceparent.split("-")[1] == trace
