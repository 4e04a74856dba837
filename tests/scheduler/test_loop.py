"""The scheduler loop on real Redis: once per tick across replicas, failures, overruns, stop."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from services.scheduler import keys
from services.scheduler.lock import JobLocks
from services.scheduler.loop import Job, JobRun, Scheduler, Tick
from services.scheduler.metrics import SchedulerMetrics
from tests.support.scheduler import get_int

INTERVAL_S = 0.2


@pytest.fixture
async def clients(
    redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[list[aioredis.Redis]]:
    """Three clients of their own, one per replica (the database is already flushed)."""
    opened = [aioredis.Redis.from_url(redis_url) for _ in range(3)]
    try:
        yield opened
    finally:
        for client in opened:
            await client.aclose()


def counting(redis: aioredis.Redis, name: str) -> JobRun:
    """A job that counts its executions per tick in Redis."""

    async def run(tick: Tick) -> None:
        await redis.incr(f"test:runs:{name}:{tick.number}")

    return run


async def runs_per_tick(redis: aioredis.Redis, name: str) -> dict[int, int]:
    """Executions of a counting job, by tick number."""
    counts: dict[int, int] = {}
    async for key in redis.scan_iter(match=f"test:runs:{name}:*"):
        counts[int(key.decode().rsplit(":", 1)[1])] = await get_int(redis, key.decode())
    return counts


def replica(
    client: aioredis.Redis, index: int, jobs: list[Job], metrics: SchedulerMetrics
) -> Scheduler:
    """One scheduler replica with its own owner name."""
    locks = JobLocks(client, owner=f"replica-{index}", lease_ttl_s=5.0)
    return Scheduler(jobs, locks, jitter_ratio=0.25, metrics=metrics)


async def run_for(schedulers: list[Scheduler], duration_s: float) -> tuple[float, float]:
    """Run the replicas concurrently, stop them gracefully; returns (start, stop) Unix times."""
    tasks = [asyncio.create_task(s.run()) for s in schedulers]
    started_s = time.time()
    await asyncio.sleep(duration_s)
    stopped_s = time.time()
    for s in schedulers:
        s.stop()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    return started_s, stopped_s


def sample(metrics: SchedulerMetrics, job: str, outcome: str) -> float:
    """The tick counter of one job and outcome."""
    return metrics.ticks.labels(job, outcome)._value.get()  # type: ignore[no-any-return]  # prometheus_client's private value holder


async def test_three_replicas_run_each_job_exactly_once_per_tick(
    clients: list[aioredis.Redis], redis_client: aioredis.Redis
) -> None:
    """Three replicas over ~12 ticks: every tick of every job ran once, none twice or skipped."""
    metrics = SchedulerMetrics.create(CollectorRegistry())
    schedulers = [
        replica(
            client,
            index,
            [
                Job("alpha", INTERVAL_S, counting(client, "alpha")),
                Job("beta", 0.3, counting(client, "beta")),
            ],
            metrics,
        )
        for index, client in enumerate(clients)
    ]
    started_s, stopped_s = await run_for(schedulers, 2.5)
    for name, interval_s in (("alpha", INTERVAL_S), ("beta", 0.3)):
        counts = await runs_per_tick(redis_client, name)
        first = math.floor(started_s / interval_s) + 1
        last_whole = math.floor(stopped_s / interval_s) - 1
        assert set(counts) <= set(range(first, last_whole + 2)), (name, sorted(counts))
        assert set(counts.values()) == {1}, (name, counts)
        # every tick runs unless all replicas' loops were late (a loaded 2-core machine)
        assert len(counts) >= 0.7 * (last_whole - first + 1), (name, sorted(counts))
        assert sample(metrics, name, "ran") == len(counts)
        # replicas stopped while waiting for the last tick never tried it
        assert 2 * len(counts) - 2 <= sample(metrics, name, "claimed_elsewhere") <= 2 * len(counts)


async def test_failing_job_is_retried_next_tick_and_others_keep_running(
    clients: list[aioredis.Redis], redis_client: aioredis.Redis
) -> None:
    """A job that raises at every tick is attempted at every tick; its neighbour runs on."""
    metrics = SchedulerMetrics.create(CollectorRegistry())

    def broken(client: aioredis.Redis) -> JobRun:
        async def run(tick: Tick) -> None:
            await client.incr(f"test:runs:broken:{tick.number}")
            raise RuntimeError("boom")

        return run

    schedulers = [
        replica(
            client,
            index,
            [
                Job("broken", INTERVAL_S, broken(client)),
                Job("healthy", INTERVAL_S, counting(client, "healthy")),
            ],
            metrics,
        )
        for index, client in enumerate(clients[:2])
    ]
    await run_for(schedulers, 1.5)
    broken_runs = await runs_per_tick(redis_client, "broken")
    healthy_runs = await runs_per_tick(redis_client, "healthy")
    assert len(broken_runs) >= 5
    assert set(broken_runs.values()) == {1}
    assert len(healthy_runs) >= 5
    assert sample(metrics, "broken", "failed") == len(broken_runs)
    assert sample(metrics, "broken", "overrun") == 0
    assert await redis_client.exists(keys.lease_key("broken")) == 0


async def test_a_run_longer_than_its_interval_is_never_overlapped(
    clients: list[aioredis.Redis], redis_client: aioredis.Redis
) -> None:
    """A 0.5 s job on a 0.2 s interval: no two runs at once across replicas; ticks skipped."""
    metrics = SchedulerMetrics.create(CollectorRegistry())

    def slow(client: aioredis.Redis) -> JobRun:
        async def run(tick: Tick) -> None:
            running = await client.incr("test:running")
            await client.rpush("test:running_seen", running)
            await asyncio.sleep(0.5)
            await client.decr("test:running")
            await client.incr("test:slow_runs")

        return run

    schedulers = [
        replica(client, index, [Job("slow", INTERVAL_S, slow(client))], metrics)
        for index, client in enumerate(clients[:2])
    ]
    await run_for(schedulers, 1.6)
    seen = [int(n) for n in await redis_client.lrange("test:running_seen", 0, -1)]
    assert len(seen) >= 2
    assert set(seen) == {1}
    assert await get_int(redis_client, "test:slow_runs") == len(seen)
    assert sample(metrics, "slow", "overrun") >= 1


async def test_stop_lets_the_run_in_progress_finish(redis_client: aioredis.Redis) -> None:
    """stop() during a run: the run completes, then run() returns and the lease is released."""
    metrics = SchedulerMetrics.create(CollectorRegistry())
    started = asyncio.Event()

    async def run(tick: Tick) -> None:
        started.set()
        await asyncio.sleep(0.3)
        await redis_client.set("test:finished", tick.number)

    scheduler = replica(redis_client, 0, [Job("work", INTERVAL_S, run)], metrics)
    task = asyncio.create_task(scheduler.run())
    await asyncio.wait_for(started.wait(), timeout=2)
    scheduler.stop()
    await asyncio.wait_for(task, timeout=2)
    assert await redis_client.exists("test:finished") == 1
    assert await redis_client.exists(keys.lease_key("work")) == 0


async def test_cancellation_stops_at_once_and_releases_the_lease(
    redis_client: aioredis.Redis,
) -> None:
    """Cancelling run() cancels a run in progress and deletes its lease."""
    metrics = SchedulerMetrics.create(CollectorRegistry())
    started = asyncio.Event()

    async def run(tick: Tick) -> None:
        started.set()
        await asyncio.Event().wait()

    scheduler = replica(redis_client, 0, [Job("hang", INTERVAL_S, run)], metrics)
    task = asyncio.create_task(scheduler.run())
    await asyncio.wait_for(started.wait(), timeout=2)
    assert await redis_client.exists(keys.lease_key("hang")) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await redis_client.exists(keys.lease_key("hang")) == 0


async def test_a_tick_is_run_by_the_first_claimant_only(redis_client: aioredis.Redis) -> None:
    """Two replicas trying the same tick: one runs it, the other sees it claimed."""
    metrics = SchedulerMetrics.create(CollectorRegistry())
    job = Job("once", 60.0, counting(redis_client, "once"))
    first, second = (replica(redis_client, i, [job], metrics) for i in range(2))
    tick = first.next_tick(job)
    tick = Tick(job="once", number=tick.number - 1, interval_s=60.0)  # the current tick
    assert await first.run_tick(job, tick) == "ran"
    assert await second.run_tick(job, tick) == "claimed_elsewhere"
    assert await first.run_tick(job, tick) == "claimed_elsewhere"
    assert await runs_per_tick(redis_client, "once") == {tick.number: 1}


async def test_a_tick_that_already_ended_is_skipped(redis_client: aioredis.Redis) -> None:
    """A replica waking after its tick ended does not run it (its claim may have expired)."""
    metrics = SchedulerMetrics.create(CollectorRegistry())
    job = Job("late", INTERVAL_S, counting(redis_client, "late"))
    scheduler = replica(redis_client, 0, [job], metrics)
    past = Tick(job="late", number=math.floor(time.time() / INTERVAL_S) - 3, interval_s=INTERVAL_S)
    assert await scheduler.run_tick(job, past) == "stale"
    assert await runs_per_tick(redis_client, "late") == {}


def test_job_names_must_be_unique(redis_client: aioredis.Redis) -> None:
    """Two jobs with one name would share locks; the scheduler refuses them."""
    run = counting(redis_client, "x")
    with pytest.raises(ValueError, match="unique"):
        Scheduler(
            [Job("x", 1.0, run), Job("x", 2.0, run)],
            JobLocks(redis_client, owner="r", lease_ttl_s=1.0),
        )


async def test_cancellation_ends_every_loop_even_when_redis_swallows_it(redis_url: str) -> None:
    """Cancelled mid-command (redis-py may lose the cancellation): run() ends, no tick after."""
    client = aioredis.Redis.from_url(redis_url)  # default socket timeout, as in production
    metrics = SchedulerMetrics.create(CollectorRegistry())

    async def busy(tick: Tick) -> None:
        for _ in range(200):
            await client.get("test:anything")
        await client.incr("test:busy_runs")

    try:
        for attempt in range(4):
            scheduler = replica(client, attempt, [Job("busy", 0.1, busy)], metrics)
            task = asyncio.create_task(scheduler.run())
            await asyncio.sleep(0.35 + attempt * 0.03)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=3)
            assert done, "the scheduler did not stop after cancellation"
            assert task.cancelled()
            runs = await get_int(client, "test:busy_runs")
            await asyncio.sleep(0.3)
            assert await get_int(client, "test:busy_runs") == runs
    finally:
        await client.aclose()
