"""A consumer process for the crash tests: `python -m tests.messaging.consumer_proc URL`.

Handles engineering:queue as langgraph; each handled task id is added to the Redis set
`test:done` (the idempotent effect) after a short, random amount of work.
"""

from __future__ import annotations

import asyncio
import random
import sys

import redis.asyncio as aioredis

from shared import registry
from shared.contracts import EngineeringMessage
from shared.messaging import Bus, MessageContext
from shared.registry import Actor

DONE_KEY = "test:done"
HANDLED_KEY = "test:handled"


async def main(url: str) -> None:
    """Consume until killed."""
    client = aioredis.Redis.from_url(url)
    bus = Bus(client, actor=Actor.LANGGRAPH)

    async def handle(message: EngineeringMessage, ctx: MessageContext) -> None:
        await asyncio.sleep(random.uniform(0.0, 0.03))
        await client.incr(HANDLED_KEY)
        await client.sadd(DONE_KEY, message.task_id)

    consumer = bus.consumer(
        registry.get("engineering:queue").name,
        handle,
        concurrency=4,
        max_attempts=100,
        reclaim_idle_ms=400,
        block_ms=200,
    )
    await consumer.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
