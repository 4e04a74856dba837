"""The streams the maintenance jobs look after, found through the registry."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from shared import registry

__all__ = ["dead_letter_streams", "source_queue", "text"]

_DLQ_SUFFIX = registry.dead_letter_stream("")[len("{}") :]
"""`:dlq`, as the registry spells it."""


def text(value: Any) -> str:
    """A value read from Redis as text (the client may or may not decode responses)."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def source_queue(dead_stream: str) -> str | None:
    """The stream a dead-letter stream belongs to (`{q}:dlq` → `q`), or None when it is not
    the dead-letter stream of a queue of the registry."""
    if not (dead_stream.startswith("{") and dead_stream.endswith("}" + _DLQ_SUFFIX)):
        return None
    stream = dead_stream[1 : -len("}" + _DLQ_SUFFIX)]
    if registry.dead_letter_stream(stream) != dead_stream:
        return None
    try:
        registry.resolve(stream)
    except registry.UnknownQueueError:
        return None
    return stream


async def dead_letter_streams(redis: aioredis.Redis) -> list[str]:
    """Every dead-letter stream that exists: those of the fixed queues, and those of concrete
    streams of patterns (`{worker:42:input}:dlq`), found with SCAN."""
    found: set[str] = set()
    for spec in registry.QUEUES:
        if not spec.is_pattern and await redis.exists(registry.dead_letter_stream(spec.name)):
            found.add(registry.dead_letter_stream(spec.name))
    pattern = registry.dead_letter_stream("*")
    async for key in redis.scan_iter(match=pattern, count=500, _type="STREAM"):
        name = text(key)
        if source_queue(name) is not None:
            found.add(name)
    return sorted(found)
