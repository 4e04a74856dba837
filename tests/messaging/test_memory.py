"""The in-memory broker has the runtime's semantics: ack, retries, dead letters, results."""

from __future__ import annotations

from shared import registry
from shared.contracts import BaseResult, EngineeringResult
from shared.messaging import MemoryBus, MessageContext
from shared.registry import Actor
from tests.messaging.conftest import Running, engineering, wait_until

ENGINEERING = registry.get("engineering:queue").name
RESULTS = registry.get("results:{actor}").format(actor="langgraph")


async def test_memory_bus_handles_retries_and_dead_letters_like_redis() -> None:
    """Success is acked and deleted, a result reaches the callback, a poison dies after 2."""
    bus = MemoryBus(actor=Actor.LANGGRAPH)
    attempts: list[int] = []

    async def handle(message: object, ctx: MessageContext) -> BaseResult | None:
        if getattr(message, "task_id", "") == "poison":
            attempts.append(ctx.attempt)
            raise RuntimeError("boom")
        return EngineeringResult(request_id=ctx.envelope.message_id, status="success")

    await bus.publish(ENGINEERING, engineering("ok", callback_stream=RESULTS))
    await bus.publish(ENGINEERING, engineering("poison"))
    consumer = bus.consumer(ENGINEERING, handle, max_attempts=2, block_ms=50, retry_base_s=0.01)
    async with Running(consumer):
        await wait_until(lambda: _has_length(bus, registry.dead_letter_stream(ENGINEERING), 1))
    assert attempts == [1, 2]
    assert await bus.transport.length(ENGINEERING) == 0
    assert await bus.transport.length(RESULTS) == 1
    [letter] = await bus.dead_letters(ENGINEERING)
    assert (letter.reason, letter.attempts) == ("exhausted", 2)


async def _has_length(bus: MemoryBus, stream: str, expected: int) -> bool:
    return await bus.transport.length(stream) == expected
