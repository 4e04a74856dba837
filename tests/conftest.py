"""Fixtures shared by the whole suite: a private Redis server, async clients."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from shared.redis_server import RedisServer, port_free


def local_ports_env(count: int = 20) -> str:
    """`ORCHESTRATOR_LOCAL_PORTS` for a test's `orchestrator up`: `count` ports free right now,
    away from the default range a user's own system deploys to (10000-10999)."""
    for _ in range(100):
        first = random.randrange(20_000, 30_000 - count)
        if all(port_free(port) for port in range(first, first + count)):
            return f"[{first}, {first + count - 1}]"
    raise RuntimeError(f"no {count} free ports in a row between 20000 and 30000")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | None]:
    """A private redis-server on a free port, or None when REDIS_URL names a server to use."""
    if os.environ.get("REDIS_URL"):
        yield None
        return
    server = RedisServer(appendonly=False).start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer | None) -> str:
    """URL of the Redis the tests use (private by default; REDIS_URL when set)."""
    if redis_server is None:
        return os.environ["REDIS_URL"]
    return redis_server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """An asyncio client on an empty database; the database is flushed before each test."""
    client: aioredis.Redis = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()
