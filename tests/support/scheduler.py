"""The scheduler tests' helpers: an API server for it, a stream's entries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import redis.asyncio as aioredis

from shared.api_client.schemas import ServerDTO, ServerStatus


def server(handle: str, status: ServerStatus, address: str = "10.0.0.1") -> ServerDTO:
    """A server as the API lists it."""
    return ServerDTO(
        handle=handle,
        address=address,
        ssh_user="deploy",
        status=status,
        port_range_start=10_000,
        port_range_end=10_099,
        capacity=100,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


async def stream_entries(
    redis: aioredis.Redis, stream: str
) -> list[tuple[str, dict[bytes, bytes]]]:
    """A stream's entries (id, fields), oldest first."""
    raw = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(stream))
    return [(entry_id.decode(), fields) for entry_id, fields in raw]


async def get_int(redis: aioredis.Redis, key: str) -> int:
    """An integer counter (0 when absent)."""
    value = cast(bytes | None, await redis.get(key))
    return 0 if value is None else int(value)
