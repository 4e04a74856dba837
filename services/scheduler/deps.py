"""The frozen dependency object every job receives, and how queues are looked up."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis
from pydantic import BaseModel

from services.scheduler.api import SchedulerApi
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.probe import (
    AppProbe,
    HealthProbe,
    HttpAppProbe,
    NoRestartCounts,
    RestartCounts,
)
from services.scheduler.settings import SchedulerSettings
from services.scheduler.workers import WorkerDirectory
from shared import registry

__all__ = ["Publisher", "SchedulerDeps", "queue_for"]


class Publisher(Protocol):
    """What jobs need of `shared.messaging.Bus`: publish one typed message."""

    async def publish(self, stream: str, message: BaseModel) -> str:
        """Write `message` on `stream`; returns its entry id."""
        ...


def queue_for(message_type: type[BaseModel]) -> str:
    """The one queue of the registry that carries `message_type` (no literals in jobs)."""
    names = [spec.name for spec in registry.iter_queues("queue") if spec.allows(message_type)]
    if len(names) != 1:
        raise LookupError(f"{message_type.__name__} is carried by {names}, expected one queue")
    return names[0]


@dataclass(frozen=True)
class SchedulerDeps:
    """Everything a job may use."""

    redis: aioredis.Redis
    publisher: Publisher
    api: SchedulerApi
    workers: WorkerDirectory
    probe: HealthProbe
    settings: SchedulerSettings
    metrics: SchedulerMetrics
    clock: Callable[[], float] = field(default=time.time)
    """Unix seconds (tests may pin it)."""
    app_probe: AppProbe = field(default_factory=lambda: HttpAppProbe(timeout_s=5.0))
    """Health checks of deployed releases."""
    restarts: RestartCounts = field(default_factory=NoRestartCounts)
    """The supervisor's restart count of a release, where it can be read."""
