"""Build the scheduler's dependencies, run its jobs, shut down.

`run_actor(ctx)` is what `orchestrator run scheduler` / `orchestrator up` call: it runs until
cancelled, then (`shared.actor.run_parts`) starts no new job run and lets those in progress
finish within `shutdown_grace_s`, releasing their leases, and closes what it opened.
`run_scheduler(settings, redis_url, scheduler_settings)` is the same with the scheduler's
settings given (tests).
"""

from __future__ import annotations

import os
import socket
import uuid

import redis.asyncio as aioredis

from services.scheduler.api import HttpSchedulerApi, SchedulerApi
from services.scheduler.deps import Publisher, SchedulerDeps
from services.scheduler.jobs import build_jobs
from services.scheduler.lock import JobLocks
from services.scheduler.loop import Scheduler
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.probe import (
    AppProbe,
    HealthProbe,
    HttpAppProbe,
    NoRestartCounts,
    RestartCounts,
    SupervisorRestarts,
    TcpProbe,
)
from services.scheduler.settings import SchedulerSettings
from services.scheduler.workers import RedisWorkerDirectory, WorkerDirectory
from shared.actor import ActorContext, run_parts
from shared.app_layout import app_dir_name, default_local_base_dir, local_apps_dir
from shared.messaging import Bus
from shared.registry import Actor
from shared.settings import Settings

__all__ = ["build_scheduler", "replica_name", "run_actor", "run_scheduler"]


def replica_name() -> str:
    """This replica's name in lock values: host, pid and a short random tag."""
    return f"{Actor.SCHEDULER.value}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def build_scheduler(
    redis: aioredis.Redis,
    settings: SchedulerSettings,
    *,
    api: SchedulerApi,
    publisher: Publisher | None = None,
    workers: WorkerDirectory | None = None,
    probe: HealthProbe | None = None,
    app_probe: AppProbe | None = None,
    restarts: RestartCounts | None = None,
    metrics: SchedulerMetrics | None = None,
    owner: str | None = None,
) -> Scheduler:
    """A scheduler with every job; parts not given get their real implementation."""
    metrics = metrics or SchedulerMetrics.default()
    deps = SchedulerDeps(
        redis=redis,
        publisher=publisher or Bus(redis, actor=Actor.SCHEDULER),
        api=api,
        workers=workers or RedisWorkerDirectory(redis),
        probe=probe
        or TcpProbe(
            port=settings.health_port,
            timeout_s=settings.health_timeout_s,
            banner=settings.health_banner.encode(),
            local_addresses=settings.local_addresses,
        ),
        settings=settings,
        metrics=metrics,
        app_probe=app_probe
        or HttpAppProbe(timeout_s=settings.app_health_timeout_s, path=settings.app_health_path),
        restarts=restarts or _restart_counts(settings),
    )
    locks = JobLocks(redis, owner=owner or replica_name(), lease_ttl_s=settings.lease_ttl_s)
    return Scheduler(
        build_jobs(deps),
        locks,
        jitter_ratio=settings.jitter_ratio,
        jitter_max_s=settings.jitter_max_s,
        metrics=metrics,
    )


def _restart_counts(settings: SchedulerSettings) -> RestartCounts:
    if settings.local_apps_dir is None:
        return NoRestartCounts()
    return SupervisorRestarts(settings.local_apps_dir, app_dir_name)


async def run_scheduler(
    settings: Settings,
    redis_url: str,
    scheduler_settings: SchedulerSettings | None = None,
) -> None:
    """Run every scheduler job against the Redis at `redis_url` and the API of `settings`
    until cancelled. `scheduler_settings` default to the tree's section of `settings`
    (`ORCHESTRATOR_SCHEDULER__*`)."""
    own = scheduler_settings or SchedulerSettings.of(settings)
    if own.local_apps_dir is None:  # the local server's supervisor, as infra-service lays it
        apps_dir = local_apps_dir(default_local_base_dir(settings.data_dir))
        own = own.model_copy(update={"local_apps_dir": apps_dir})
    redis = aioredis.Redis.from_url(redis_url)
    api = HttpSchedulerApi.from_settings(settings)
    try:
        await run_parts(
            Actor.SCHEDULER.value,
            consumers=[build_scheduler(redis, own, api=api)],
            shutdown_grace_s=settings.shutdown_grace_s,
        )
    finally:
        await api.aclose()
        await redis.aclose()


async def run_actor(ctx: ActorContext) -> None:
    """The `scheduler` actor: every job, once per tick across replicas, until cancelled."""
    await run_scheduler(ctx.settings, ctx.redis_url)
