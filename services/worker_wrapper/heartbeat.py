"""The wrapper's writes into the manager's registry of workers.

The manager owns the record; the wrapper only reports `status` (`running` / `busy`),
`heartbeat_at` and `last_activity_at`, and only while the record is live: once the manager
marked the worker stopped or failed, nothing the wrapper says resurrects it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import redis.asyncio as aioredis
import structlog
from redis.exceptions import AuthenticationError, RedisError

from shared.messaging.cancel import raise_if_cancelling

__all__ = ["RegistryReporter"]

log = structlog.get_logger("services.worker_wrapper.heartbeat")

_SET_IF_LIVE = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'starting' and status ~= 'running' and status ~= 'busy' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


class RegistryReporter:
    """Reports this worker's status and heartbeats into its registry hash."""

    def __init__(self, redis: aioredis.Redis, key: str) -> None:
        self.redis = redis
        self.key = key
        self._script = redis.register_script(_SET_IF_LIVE)

    async def report(self, **fields: str | float) -> bool:
        """Set fields while the record is live; False when the manager ended the worker."""
        args: list[str | float] = []
        for name, value in fields.items():
            args += [name, value]
        return bool(await self._script(keys=[self.key], args=args))

    async def status(self, status: str) -> bool:
        """Report `running` or `busy` (with activity and heartbeat now)."""
        now = time.time()
        return await self.report(status=status, last_activity_at=now, heartbeat_at=now)

    async def beat_forever(
        self, interval_s: float, *, orphan_after_s: float, on_orphaned: Callable[[str], None]
    ) -> None:
        """Write `heartbeat_at` every `interval_s` until cancelled.

        Calls `on_orphaned` (once) when the manager no longer counts this worker as live
        (its record is stopped, failed or gone), when Redis refuses its credential (the
        manager deleted the worker's ACL user), or when Redis stayed unreachable for
        `orphan_after_s`: a worker nobody can talk to stops instead of lingering.
        """
        last_ok = time.monotonic()
        while True:
            raise_if_cancelling()  # the last report may have absorbed it
            try:
                live = await self.report(heartbeat_at=time.time())
                last_ok = time.monotonic()
            except AuthenticationError as exc:  # its ACL user was deleted: it is over
                log.warning("heartbeat_refused", error=str(exc))
                live = False
            except (RedisError, OSError) as exc:
                raise_if_cancelling()
                log.warning("heartbeat_failed", error=str(exc))
                live = time.monotonic() - last_ok < orphan_after_s
            if not live:
                on_orphaned("the worker is no longer live in the registry, or Redis is gone")
                return
            await asyncio.sleep(interval_s)
