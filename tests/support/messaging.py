"""The messaging tests' helpers: a running consumer and a stream's entries."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from shared.contracts import EngineeringMessage
from shared.messaging import Consumer


def engineering(task_id: str = "t-1", **extra: object) -> EngineeringMessage:
    """An engineering message for a task."""
    return EngineeringMessage(task_id=task_id, project_id="p-1", user_id=7, **extra)  # type: ignore[arg-type]


class Running:
    """A consumer running in a task; `async with Running(consumer):`."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Consumer:
        self.task = asyncio.create_task(self.consumer.run())
        return self.consumer

    async def __aexit__(self, *exc: object) -> None:
        self.consumer.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout=15)


async def read_entries(client: aioredis.Redis, stream: str) -> list[tuple[str, dict[str, str]]]:
    """Every entry of a stream as `(id, {field: value})` text."""
    raw: Any = await client.xrange(stream)
    return [
        (entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()})
        for entry_id, fields in raw
    ]
