"""The wrapper's writes into the manager's registry of workers.

The manager owns the record; the wrapper only reports `status` (`running` / `busy`),
`heartbeat_at` and `last_activity_at`, and only while the record is live: once the manager
marked the worker stopped or failed, nothing the wrapper says resurrects it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal

import redis.asyncio as aioredis
import structlog
from redis.exceptions import AuthenticationError, RedisError

from shared.messaging.cancel import raise_if_cancelling

__all__ = ["SCRIPTS", "RegistryReporter", "Release"]

log = structlog.get_logger("services.worker_wrapper.heartbeat")

_SET_IF_LIVE = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'starting' and status ~= 'running' and status ~= 'busy' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""
_RUN_WHEN_RELEASED = """
if ARGV[2] ~= '1' then
  local word = redis.call('LPOP', KEYS[2])
  if not word then return 0 end
  if word ~= 'go' then return -1 end
end
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'starting' and status ~= 'running' and status ~= 'busy' then return -2 end
redis.call('HSET', KEYS[1], 'status', 'running',
  'last_activity_at', ARGV[1], 'heartbeat_at', ARGV[1])
if KEYS[3] then
  redis.call('RPUSH', KEYS[3], 'running')
  redis.call('EXPIRE', KEYS[3], ARGV[3])
end
return 1
"""
SCRIPTS = (_SET_IF_LIVE, _RUN_WHEN_RELEASED)
"""The reporter's scripts (a warm wrapper loads them ahead of its task)."""
_STARTED_TTL_S = 60

Release = Literal["running", "wait", "refused", "not_live"]
_RELEASES: dict[int, Release] = {1: "running", 0: "wait", -1: "refused", -2: "not_live"}


class RegistryReporter:
    """Reports this worker's status and heartbeats into its registry hash."""

    def __init__(self, redis: aioredis.Redis, key: str) -> None:
        self.redis = redis
        self.key = key
        self._script = redis.register_script(_SET_IF_LIVE)
        self._run_when_released = redis.register_script(_RUN_WHEN_RELEASED)

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

    async def run_when_released(
        self, ready_key: str, started_key: str | None = None, *, popped: bool = False
    ) -> Release:
        """A bound warm wrapper's start, one round trip: take the manager's `go` from
        `ready_key` (already taken: `popped`) and report `running` while the record is live,
        then tell the manager so on `started_key` (a list it waits on). `wait`: no word there
        yet; `refused`: another word was (taken, nothing reported); `not_live`: the manager
        ended the worker meanwhile."""
        keys = [self.key, ready_key] + ([started_key] if started_key else [])
        now = time.time()
        answer = await self._run_when_released(
            keys=keys, args=[now, "1" if popped else "0", _STARTED_TTL_S]
        )
        return _RELEASES[int(answer)]

    async def beat_forever(
        self,
        interval_s: float,
        *,
        orphan_after_s: float,
        on_orphaned: Callable[[str], None],
        first_after_s: float = 0.0,
    ) -> None:
        """Write `heartbeat_at` every `interval_s` until cancelled.

        Calls `on_orphaned` (once) when the manager no longer counts this worker as live
        (its record is stopped, failed or gone), when Redis refuses its credential (the
        manager deleted the worker's ACL user), or when Redis stayed unreachable for
        `orphan_after_s`: a worker nobody can talk to stops instead of lingering. The
        first beat comes after `first_after_s` (a status just reported beat already).
        """
        last_ok = time.monotonic()
        if first_after_s > 0:
            await asyncio.sleep(first_after_s)
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
