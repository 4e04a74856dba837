"""Poison messages, malformed and schema-invalid entries, dead-letter replay and purge."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from shared import registry
from shared.contracts import BaseResult, EngineeringResult
from shared.messaging import Bus, DeadLetter, MessageContext, Metrics, Retry
from shared.messaging.transport import parse_id
from tests.support.messaging import Running, engineering
from tests.support.waiting import eventually

ENGINEERING = registry.get("engineering:queue").name
DLQ = registry.dead_letter_stream(ENGINEERING)


async def test_poison_is_retried_then_dead_lettered_while_the_queue_keeps_flowing(
    bus: Bus, redis_client: aioredis.Redis, metrics: Metrics
) -> None:
    """A handler failing every time: max_attempts deliveries, then the DLQ; others still flow."""
    attempts: list[int] = []
    handled: list[str] = []

    async def handle(message: object, ctx: MessageContext) -> None:
        task_id = getattr(message, "task_id", "")
        if task_id == "poison":
            attempts.append(ctx.attempt)
            raise ValueError("cannot handle this one")
        handled.append(task_id)

    await bus.publish(ENGINEERING, engineering("poison"))
    await bus.publish_many([(ENGINEERING, engineering(f"ok-{i}")) for i in range(20)])
    consumer = bus.consumer(
        ENGINEERING, handle, max_attempts=3, block_ms=100, retry_base_s=0.05, retry_max_s=0.1
    )
    async with Running(consumer):
        await eventually(lambda: len(handled) == 20)
        await eventually(lambda: _xlen(redis_client, DLQ, 1))
    assert attempts == [1, 2, 3]
    [letter] = await bus.dead_letters(ENGINEERING)
    assert (letter.reason, letter.attempts, letter.message_type) == (
        "exhausted",
        3,
        "EngineeringMessage",
    )
    assert "ValueError: cannot handle this one" in letter.error
    assert json.loads(letter.payload)["task_id"] == "poison"
    assert await redis_client.xlen(ENGINEERING) == 0
    assert metrics.dead_lettered.labels(ENGINEERING, "langgraph", "exhausted")._value.get() == 1


async def _xlen(client: aioredis.Redis, stream: str, expected: int) -> bool:
    return int(await client.xlen(stream)) == expected


async def test_malformed_and_invalid_entries_are_dead_lettered_at_once(
    bus: Bus, redis_client: aioredis.Redis
) -> None:
    """Raw XADDs of bad JSON, a schema-invalid payload, no payload and an unknown type go to the
    DLQ on the first delivery with the reason; a valid message beside them is handled."""
    handled: list[str] = []

    async def handle(message: object, ctx: MessageContext) -> None:
        handled.append(getattr(message, "task_id", ""))

    await redis_client.xadd(ENGINEERING, {"type": "EngineeringMessage", "payload": "{not json"})
    await redis_client.xadd(
        ENGINEERING, {"type": "EngineeringMessage", "payload": json.dumps({"task_id": 1})}
    )
    await redis_client.xadd(ENGINEERING, {"hello": "world"})
    await redis_client.xadd(ENGINEERING, {"type": "ProgressEvent", "payload": "{}"})
    await bus.publish(ENGINEERING, engineering("valid"))
    async with Running(bus.consumer(ENGINEERING, handle, block_ms=100)):
        await eventually(lambda: _xlen(redis_client, DLQ, 4))
        await eventually(lambda: handled == ["valid"])
    letters = sorted(await bus.dead_letters(ENGINEERING), key=lambda x: parse_id(x.source_entry_id))
    assert [(x.reason, x.attempts) for x in letters] == [
        ("malformed", 1),
        ("invalid", 1),
        ("malformed", 1),
        ("unknown_type", 1),
    ]
    assert "payload is not JSON" in letters[0].error
    assert "task_id" in letters[1].error
    assert "project_id: Field required" in letters[1].error
    assert await redis_client.xlen(ENGINEERING) == 0


async def test_dead_letter_signal_replay_and_purge(bus: Bus, redis_client: aioredis.Redis) -> None:
    """DeadLetter moves at once; replay puts it back as a fresh entry; purge empties the DLQ."""
    calls: list[int] = []

    async def handle(message: object, ctx: MessageContext) -> None:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            raise DeadLetter("not now")

    await bus.publish(ENGINEERING, engineering("x"))
    async with Running(bus.consumer(ENGINEERING, handle, block_ms=100)):
        await eventually(lambda: _xlen(redis_client, DLQ, 1))
        [letter] = await bus.dead_letters(ENGINEERING)
        assert (letter.reason, letter.error) == ("rejected", "not now")
        assert len(await bus.replay_dead_letters(ENGINEERING)) == 1
        await eventually(lambda: calls == [1, 1])
    assert await redis_client.xlen(DLQ) == 0
    await redis_client.xadd(ENGINEERING, {"payload": "bad"})
    async with Running(bus.consumer(ENGINEERING, handle, block_ms=100)):
        await eventually(lambda: _xlen(redis_client, DLQ, 1))
    assert await bus.purge_dead_letters(ENGINEERING) == 1
    assert await redis_client.xlen(DLQ) == 0


async def test_retry_signal_redelivers_with_a_counted_attempt(
    bus: Bus, redis_client: aioredis.Redis
) -> None:
    """Retry(delay_s) hands the message back after the delay as attempt 2, then it is acked."""
    attempts: list[int] = []

    async def handle(message: object, ctx: MessageContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise Retry("not ready yet", delay_s=0.05)

    await bus.publish(ENGINEERING, engineering())
    async with Running(bus.consumer(ENGINEERING, handle, block_ms=100)):
        await eventually(lambda: _xlen(redis_client, ENGINEERING, 0))
    assert attempts == [1, 2]
    assert await redis_client.xlen(DLQ) == 0


async def test_result_for_an_unknown_callback_stream_is_dead_lettered(
    bus: Bus, redis_client: aioredis.Redis
) -> None:
    """A result that cannot be delivered is not dropped: the message goes to the DLQ."""

    async def handle(message: Any, ctx: MessageContext) -> BaseResult:
        return EngineeringResult(request_id=message.request_id, status="success")

    await bus.publish(ENGINEERING, engineering(callback_stream="nowhere:at:all"))
    async with Running(bus.consumer(ENGINEERING, handle, block_ms=100)):
        await eventually(lambda: _xlen(redis_client, DLQ, 1))
    [letter] = await bus.dead_letters(ENGINEERING)
    assert letter.reason == "result_undeliverable"
    assert "nowhere:at:all" in letter.error
