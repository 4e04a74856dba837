"""The worker-manager's registry of workers, as the scheduler reads it: a Protocol, the Redis
implementation, and an in-memory fake.

`RedisWorkerDirectory` reads the layout `services/worker_manager/registry.py` writes (keys
configured in `SchedulerSettings`, since services never import each other).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis

from shared.registry import WORKER_INDEX_KEY, worker_record_key

__all__ = ["IdleWorker", "MemoryWorkerDirectory", "RedisWorkerDirectory", "WorkerDirectory"]


@dataclass(frozen=True)
class IdleWorker:
    """A worker and when it was last active (Unix seconds)."""

    worker_id: str
    last_activity_s: float


_LIVE = frozenset({"starting", "running", "busy"})
"""Statuses of a worker that still exists (the worker-manager's `LIVE_STATUSES`)."""


class WorkerDirectory(Protocol):
    """Where the scheduler learns which workers exist, for which task, and when they were
    last active."""

    async def idle_workers(self, *, inactive_since_s: float) -> list[IdleWorker]:
        """Workers whose last activity is at or before `inactive_since_s` (Unix seconds)."""
        ...

    async def task_workers(self, task_id: str) -> list[str]:
        """Ids of the live workers created for a task (starting, running or busy)."""
        ...


class RedisWorkerDirectory:
    """`WorkerDirectory` on the worker-manager's registry (`shared.registry`'s layout): a
    set of worker ids and one hash per worker with `status`, `task_id`, `created_at` and
    `last_activity_at` (Unix seconds).

    Only `running` workers count: `busy` ones are working, `starting` ones not up yet,
    `stopped`/`failed` ones gone. A worker never active counts from its creation."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def idle_workers(self, *, inactive_since_s: float) -> list[IdleWorker]:
        """Running workers last active at or before the cutoff, by id."""
        idle: list[IdleWorker] = []
        for raw_id in sorted(await self.redis.smembers(WORKER_INDEX_KEY)):
            worker_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            status, created, active = await self.redis.hmget(
                worker_record_key(worker_id),
                ["status", "created_at", "last_activity_at"],
            )
            if _text(status) != "running":
                continue
            seen_s = max(_seconds(created), _seconds(active))
            if seen_s <= inactive_since_s:
                idle.append(IdleWorker(worker_id=worker_id, last_activity_s=seen_s))
        return idle

    async def task_workers(self, task_id: str) -> list[str]:
        """Live workers whose record names the task, by id."""
        found: list[str] = []
        for raw_id in sorted(await self.redis.smembers(WORKER_INDEX_KEY)):
            worker_id = _text(raw_id)
            status, owner_task = await self.redis.hmget(
                worker_record_key(worker_id), ["status", "task_id"]
            )
            if _text(status) in _LIVE and _text(owner_task) == task_id:
                found.append(worker_id)
        return found


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _seconds(value: bytes | str | None) -> float:
    try:
        return float(_text(value) or 0)
    except ValueError:
        return 0.0


@dataclass
class MemoryWorkerDirectory:
    """`WorkerDirectory` on dictionaries: worker id → last activity (Unix seconds), and
    worker id → the task it works for."""

    last_activity_s: dict[str, float] = field(default_factory=dict)
    task_of: dict[str, str] = field(default_factory=dict)

    async def idle_workers(self, *, inactive_since_s: float) -> list[IdleWorker]:
        """Workers last active at or before the cutoff."""
        return [
            IdleWorker(worker_id=worker_id, last_activity_s=seen_s)
            for worker_id, seen_s in sorted(self.last_activity_s.items())
            if seen_s <= inactive_since_s
        ]

    async def task_workers(self, task_id: str) -> list[str]:
        """Workers of the task, by id."""
        return sorted(w for w, task in self.task_of.items() if task == task_id)
