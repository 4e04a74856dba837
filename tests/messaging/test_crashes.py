"""Crash recovery on real Redis: SIGKILLed consumers, a restarted server, lost groups."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from shared import registry
from shared.messaging import Bus, MessageContext, PublishError
from shared.redis_server import RedisServer
from shared.registry import Actor
from tests.messaging.consumer_proc import DONE_KEY, HANDLED_KEY
from tests.support.messaging import Running, engineering
from tests.support.waiting import eventually

ENGINEERING = registry.get("engineering:queue").name
ROOT = Path(__file__).resolve().parents[2]


def _start_consumer(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.messaging.consumer_proc", url],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.slow
async def test_consumer_sigkilled_mid_handler_repeatedly_loses_nothing(
    bus: Bus, redis_client: aioredis.Redis, redis_url: str
) -> None:
    """Killing consumer processes with SIGKILL again and again: every message is still handled
    and acknowledged, and the stream ends empty with nothing pending or dead-lettered."""
    total = 300
    await bus.publish_many([(ENGINEERING, engineering(f"t-{i}")) for i in range(total)])
    kills = 0
    process = _start_consumer(redis_url)
    try:
        for _ in range(5):
            await eventually(lambda: _grew(redis_client), timeout_s=20)
            await asyncio.sleep(0.3)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            kills += 1
            process = _start_consumer(redis_url)
        await eventually(lambda: _count(redis_client, total), timeout_s=60)
        await eventually(lambda: _empty(redis_client), timeout_s=20)
    finally:
        process.kill()
        process.wait(timeout=10)
    assert kills == 5
    assert await redis_client.scard(DONE_KEY) == total
    handled = int(await redis_client.get(HANDLED_KEY) or 0)
    assert handled >= total  # redeliveries of killed handlers are allowed, losses are not
    assert await redis_client.xlen(registry.dead_letter_stream(ENGINEERING)) == 0


async def _grew(client: aioredis.Redis) -> bool:
    return int(await client.get(HANDLED_KEY) or 0) > 0


async def _count(client: aioredis.Redis, expected: int) -> bool:
    return int(await client.scard(DONE_KEY)) == expected


async def _empty(client: aioredis.Redis) -> bool:
    pending: Any = await client.xpending(ENGINEERING, "langgraph")
    return int(await client.xlen(ENGINEERING)) == 0 and int(pending["pending"]) == 0


@pytest.mark.slow
async def test_redis_restart_with_appendonly_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """Producers and a consumer keep running through a Redis restart (AOF on): every message
    whose publish returned is handled, and the consumer resumes by itself."""
    server = RedisServer(appendonly=True, data_dir=tmp_path / "redis").start()
    client = aioredis.Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=1)
    try:
        bus = Bus(client, actor=Actor.LANGGRAPH, publish_attempts=10)
        acknowledged: set[str] = set()
        failed: set[str] = set()
        handled: set[str] = set()

        async def handle(message: Any, ctx: MessageContext) -> None:
            handled.add(message.task_id)

        async def produce(prefix: str) -> None:
            for i in range(150):
                task_id = f"{prefix}-{i}"
                try:
                    await bus.publish(ENGINEERING, engineering(task_id))
                    acknowledged.add(task_id)
                except PublishError:
                    failed.add(task_id)
                await asyncio.sleep(0.005)

        consumer = bus.consumer(ENGINEERING, handle, block_ms=200, reclaim_idle_ms=1_000)
        async with Running(consumer):
            producers = [asyncio.create_task(produce(p)) for p in ("a", "b")]
            await eventually(lambda: len(handled) > 20)
            await asyncio.to_thread(server.restart)
            await asyncio.gather(*producers)
            await eventually(lambda: acknowledged <= handled, timeout_s=30)
        assert len(acknowledged) + len(failed) == 300
        assert len(acknowledged) >= 250
    finally:
        await client.aclose()
        server.cleanup()


async def test_lost_group_is_recreated_and_consumption_resumes(
    bus: Bus, redis_client: aioredis.Redis
) -> None:
    """XGROUP DESTROY under a running consumer: it re-creates the group and keeps consuming."""
    handled: list[str] = []

    async def handle(message: Any, ctx: MessageContext) -> None:
        handled.append(message.task_id)

    async with Running(bus.consumer(ENGINEERING, handle, block_ms=100)):
        await bus.publish(ENGINEERING, engineering("before"))
        await eventually(lambda: handled == ["before"])
        await redis_client.xgroup_destroy(ENGINEERING, "langgraph")
        await bus.publish(ENGINEERING, engineering("after"))
        await eventually(lambda: handled == ["before", "after"])
