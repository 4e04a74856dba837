"""Fixtures of the scheduler tests: fast settings, in-memory outside systems, real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
import structlog
from prometheus_client import CollectorRegistry

from services.scheduler.api import MemorySchedulerApi
from services.scheduler.deps import SchedulerDeps
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.probe import MemoryProbe
from services.scheduler.settings import SchedulerSettings
from services.scheduler.workers import MemoryWorkerDirectory
from shared.messaging import Bus
from shared.registry import Actor


@pytest.fixture(autouse=True)
def plain_tracebacks() -> Iterator[None]:
    """Plain-text tracebacks in logs: the default rich ones take ~0.2 s each to render, which
    stalls a loop whose ticks are 0.2 s apart (production logs JSON)."""
    saved = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            ),
        ]
    )
    try:
        yield
    finally:
        structlog.configure(**saved)


@pytest.fixture
def metrics() -> SchedulerMetrics:
    """Metric families on a registry of their own (no clash between tests)."""
    return SchedulerMetrics.create(CollectorRegistry())


@pytest.fixture
def scheduler_settings() -> SchedulerSettings:
    """Settings with defaults, independent of the environment."""
    return SchedulerSettings()


@pytest.fixture
def deps(
    redis_client: aioredis.Redis, scheduler_settings: SchedulerSettings, metrics: SchedulerMetrics
) -> SchedulerDeps:
    """Jobs' dependencies: real Redis and bus, in-memory API, worker registry and probe."""
    return SchedulerDeps(
        redis=redis_client,
        publisher=Bus(redis_client, actor=Actor.SCHEDULER),
        api=MemorySchedulerApi(),
        workers=MemoryWorkerDirectory(),
        probe=MemoryProbe(),
        settings=scheduler_settings,
        metrics=metrics,
    )
