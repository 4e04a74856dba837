"""What a flow may ask about its workers: the worker-manager's registry, read-only.

The worker-manager owns the registry (`shared.registry.worker_record_key`); a flow only reads
a worker's status, to tell a worker that died (its record `failed`: process gone, heartbeat
lost) from an agent that failed on a live worker.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from shared.registry import worker_record_key

__all__ = ["RegistryWorkers"]


class RegistryWorkers:
    """The status of workers, from the worker registry in Redis."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def status(self, worker_id: str) -> str | None:
        """The worker's status (`starting`, `running`, `busy`, `stopped`, `failed`), or None
        when the registry holds no record of it."""
        raw = await self.redis.hget(worker_record_key(worker_id), "status")
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)
