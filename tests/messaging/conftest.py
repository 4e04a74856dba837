"""Fixtures of the messaging tests: a bus on the private Redis, message factories."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from shared.contracts import EngineeringMessage
from shared.messaging import Bus, Consumer, Metrics
from shared.registry import Actor


@pytest.fixture
def metrics() -> Metrics:
    """Metric families on a registry of their own, so tests can read exact values."""
    return Metrics.create(CollectorRegistry())


@pytest.fixture
def bus(redis_client: aioredis.Redis, metrics: Metrics) -> Bus:
    """A langgraph bus on the private, flushed Redis."""
    return Bus(redis_client, actor=Actor.LANGGRAPH, metrics=metrics)


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
