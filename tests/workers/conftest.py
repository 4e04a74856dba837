"""Fixtures of the worker tests: a worker-manager running in the test's loop, a client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.support.workers import Client, ManagerRunner


@pytest.fixture
async def manager(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[ManagerRunner]:
    """A manager runner; every worker is gone after the test."""
    runner = ManagerRunner(redis_client, redis_url, tmp_path)
    try:
        yield runner
    finally:
        await runner.stop()
        await runner.kill_all_workers()


@pytest.fixture
def client(redis_client: aioredis.Redis) -> Client:
    """A client of the worker-manager."""
    return Client(redis_client)


@pytest.fixture
def start_manager(manager: ManagerRunner) -> Callable[..., Any]:
    """Start the manager with overrides."""
    return manager.start
