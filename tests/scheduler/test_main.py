"""`run_scheduler`, the integrator's entry point, on real Redis with an API that is down."""

from __future__ import annotations

import asyncio
import socket
import time

import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from services.scheduler import keys
from services.scheduler.main import run_scheduler
from services.scheduler.settings import JobIntervals, SchedulerSettings
from shared import registry
from shared.contracts import DeleteWorkerCommand
from shared.settings import ApiSettings, Settings
from tests.support.scheduler import stream_entries


def free_port() -> int:
    """A TCP port nothing listens on: the API is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api_failures() -> float:
    """Failed ticks of `enforce_task_deadlines` so far (run_scheduler counts on the default
    registry)."""
    value = REGISTRY.get_sample_value(
        "orchestrator_scheduler_ticks_total",
        {"job": "enforce_task_deadlines", "outcome": "failed"},
    )
    return value or 0.0


async def test_run_scheduler_keeps_running_while_the_api_is_down(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    """API jobs fail every tick; Redis-only jobs still do their work; cancel stops it cleanly."""
    fast = SchedulerSettings(
        intervals_s=JobIntervals(**dict.fromkeys(JobIntervals.model_fields, 0.2)),
        jitter_ratio=0.2,
    )
    settings = Settings(api=ApiSettings(port=free_port()))
    long_ago = str(time.time() - 10_000)
    await redis_client.hset(
        "workers:{w-idle}",
        mapping={"status": "running", "created_at": long_ago, "last_activity_at": long_ago},
    )
    await redis_client.sadd("workers:index", "w-idle")
    await redis_client.xadd(
        registry.dead_letter_stream("scaffolder:queue"), {"dlq_reason": "exhausted"}
    )
    failed_before = api_failures()
    task = asyncio.create_task(run_scheduler(settings, redis_url, fast))
    for _ in range(200):  # polling Redis and metrics: up to 10 s on a loaded machine
        if (
            api_failures() >= failed_before + 3
            and await redis_client.exists("worker:commands")
            and await redis_client.hlen(keys.DEAD_LETTER_CURSORS)
        ):
            break
        await asyncio.sleep(0.05)
    assert not task.done()
    assert api_failures() >= failed_before + 3  # failed at 3 ticks, retried each time
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert done
    assert task.cancelled()
    commands = [
        DeleteWorkerCommand.model_validate_json(fields[b"payload"])
        for _, fields in await stream_entries(redis_client, "worker:commands")
    ]
    assert [c.worker_id for c in commands] == ["w-idle"]
    assert await redis_client.hexists(
        keys.DEAD_LETTER_CURSORS, registry.dead_letter_stream("scaffolder:queue")
    )
    assert [key async for key in redis_client.scan_iter(match=keys.lease_key("*"))] == []
