"""Redis locks that make each job run once per tick across any number of replicas.

Two keys per job:

- the tick claim, `SET scheduler:tick:<job>:<tick> <owner> NX PX <ttl>`: the first replica
  to set it runs the job for that tick; the others skip. The claim is never released: it
  expires after two intervals, longer than any replica may still try that tick (a replica
  that wakes after the tick ended skips it as stale), so a tick cannot run twice;
- the run lease, `SET scheduler:lease:<job> <owner> NX PX <ttl>`, taken by the claim's
  winner, renewed while the job runs and released (compare-and-delete in Lua, only while
  still the owner) when it ends: a run that outlives its interval is not overlapped by the
  next tick's run on another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
import structlog

from services.scheduler import keys
from shared.messaging.cancel import raise_if_cancelling

__all__ = ["JobLocks"]

log = structlog.get_logger("services.scheduler.lock")

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class JobLocks:
    """Tick claims and run leases of one replica (`owner` names it in the keys' values)."""

    def __init__(self, redis: aioredis.Redis, *, owner: str, lease_ttl_s: float) -> None:
        self.redis = redis
        self.owner = owner
        self.lease_ttl_ms = max(int(lease_ttl_s * 1000), 1)

    async def claim_tick(self, job: str, tick: int, *, interval_s: float) -> bool:
        """True for the one replica that claims `tick` of `job` first."""
        ttl_ms = max(int(interval_s * 2000), 10)
        claimed = await self.redis.set(keys.tick_key(job, tick), self.owner, nx=True, px=ttl_ms)
        return bool(claimed)

    async def acquire_lease(self, job: str) -> bool:
        """Take the run lease of `job`; False while another run of it holds it."""
        taken = await self.redis.set(keys.lease_key(job), self.owner, nx=True, px=self.lease_ttl_ms)
        return bool(taken)

    async def renew_lease(self, job: str) -> bool:
        """Extend the lease if this replica still owns it."""
        renewed = await self.redis.eval(
            _RENEW, 1, keys.lease_key(job), self.owner, str(self.lease_ttl_ms)
        )
        return bool(renewed)

    async def release_lease(self, job: str) -> bool:
        """Delete the lease if this replica still owns it (never another replica's)."""
        released = await self.redis.eval(_RELEASE, 1, keys.lease_key(job), self.owner)
        return bool(released)

    @contextlib.asynccontextmanager
    async def lease(self, job: str) -> AsyncIterator[bool]:
        """`async with locks.lease(job) as held:` renewed in the background while held,
        released on exit (also on error or cancellation)."""
        if not await self.acquire_lease(job):
            yield False
            return
        finished = asyncio.Event()
        renewer = asyncio.create_task(self._keep_renewed(job, finished))
        try:
            yield True
        finally:
            # the event ends the renewer even if its cancellation is lost inside the Redis
            # client (see `Scheduler.run`); wait() never raises the renewer's CancelledError,
            # so a cancellation of this task arriving now still propagates
            finished.set()
            renewer.cancel()
            try:
                await asyncio.wait([renewer])
            finally:
                await self._release_quietly(job)

    async def _release_quietly(self, job: str) -> None:
        try:
            await self.release_lease(job)
        except Exception:  # the lease expires by itself; never mask the job's outcome
            log.warning("lease_release_failed", job=job, exc_info=True)

    async def _keep_renewed(self, job: str, finished: asyncio.Event) -> None:
        period_s = self.lease_ttl_ms / 3000
        finished_waiter = asyncio.ensure_future(finished.wait())
        try:
            while True:
                await asyncio.wait([finished_waiter], timeout=period_s)
                raise_if_cancelling()  # a Redis call may have absorbed it
                if finished.is_set():
                    return
                try:
                    if not await self.renew_lease(job):
                        log.warning("lease_lost", job=job, owner=self.owner)
                        return
                except Exception:  # a failed renewal is retried; the job keeps running
                    raise_if_cancelling()
                    log.warning("lease_renew_failed", job=job, exc_info=True)
        finally:
            finished_waiter.cancel()
