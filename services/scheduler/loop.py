"""The scheduler loop: one asyncio task per job, waking at each tick boundary (with jitter).

Ticks are numbered from the Unix epoch, `tick = floor(now / interval)`, so every replica
counts the same ticks. At a boundary each replica tries to claim the tick (`JobLocks`); the
winner takes the job's run lease and runs it. A job that raises is logged and counted; it
runs again on its next tick and the other jobs never notice. A replica that wakes after its
tick already ended (a blocked loop, a long previous run) skips that tick as stale.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import structlog

from services.scheduler.errors import SchedulerError
from services.scheduler.lock import JobLocks
from services.scheduler.metrics import SchedulerMetrics
from shared.api_client.errors import ApiCallError
from shared.messaging.cancel import raise_if_cancelling

__all__ = ["Job", "JobRun", "Outcome", "Scheduler", "Tick"]

log = structlog.get_logger("services.scheduler")


@dataclass(frozen=True)
class Tick:
    """One tick of one job: its number and when its window starts and ends (Unix seconds)."""

    job: str
    number: int
    interval_s: float

    @property
    def start_s(self) -> float:
        """The tick's boundary."""
        return self.number * self.interval_s

    @property
    def end_s(self) -> float:
        """The next tick's boundary."""
        return (self.number + 1) * self.interval_s


JobRun = Callable[[Tick], Awaitable[None]]
"""What a job does at one tick."""

Outcome = Literal["ran", "failed", "claimed_elsewhere", "overrun", "stale"]
"""What a replica did with a tick: ran the job (ok or failed), saw another replica claim it,
skipped it because the previous run still holds the lease, or woke after it ended."""


@dataclass(frozen=True)
class Job:
    """A named periodic job."""

    name: str
    interval_s: float
    run: JobRun


class Scheduler:
    """Runs `jobs` once per tick across replicas until `stop()` or cancellation."""

    def __init__(
        self,
        jobs: Sequence[Job],
        locks: JobLocks,
        *,
        jitter_ratio: float = 0.1,
        jitter_max_s: float = 2.0,
        metrics: SchedulerMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        names = [job.name for job in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"job names must be unique: {names}")
        self.jobs = tuple(jobs)
        self.locks = locks
        self.jitter_ratio = jitter_ratio
        self.jitter_max_s = jitter_max_s
        self.metrics = metrics or SchedulerMetrics.default()
        self.clock = clock
        self._stopping = asyncio.Event()

    def stop(self, *, grace_s: float | None = None) -> None:
        """Finish the runs in progress, start no new one, then let `run()` return (whoever
        stops it bounds the wait: `shared.actor.run_parts` cancels it after `grace_s`)."""
        self._stopping.set()

    async def run(self) -> None:
        """One task per job until `stop()`; cancelling this cancels the jobs' runs too and
        returns once every loop ended."""
        log.info("scheduler_started", owner=self.locks.owner, jobs=[j.name for j in self.jobs])
        stop_waiter: asyncio.Future[object] = asyncio.ensure_future(self._stopping.wait())
        loops = [
            asyncio.create_task(self._job_loop(job, stop_waiter), name=f"scheduler:{job.name}")
            for job in self.jobs
        ]
        try:
            # wait(), not gather(): a cancellation of run() reaches the handler below at once
            await asyncio.wait(loops, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            await self._end(loops)
            raise
        else:
            broken = [t for t in loops if t.done() and not t.cancelled() and t.exception()]
            if broken:  # a bug in the loop itself (job failures never get here): stop all
                await self._end(loops)
                broken[0].result()
        finally:
            stop_waiter.cancel()
            log.info("scheduler_stopped", owner=self.locks.owner)

    async def _end(self, loops: list[asyncio.Task[None]]) -> None:
        """Stop every loop. Setting `_stopping` as well as cancelling matters: redis-py 8.1 on
        Python 3.11 loses a cancellation that arrives during a command (when a socket timeout
        is set), and a loop that lost it would tick forever; this way it ends after its
        current run."""
        self._stopping.set()
        for task in loops:
            task.cancel()
        await asyncio.wait(loops)

    def next_tick(self, job: Job) -> Tick:
        """The first tick of `job` that starts after now."""
        number = math.floor(self.clock() / job.interval_s) + 1
        return Tick(job=job.name, number=number, interval_s=job.interval_s)

    def jitter_s(self, job: Job) -> float:
        """A random delay after the boundary, so replicas do not all wake at the same instant."""
        return random.uniform(0.0, min(job.interval_s * self.jitter_ratio, self.jitter_max_s))  # noqa: S311 - not cryptographic

    async def _job_loop(self, job: Job, stop_waiter: asyncio.Future[object]) -> None:
        while not self._stopping.is_set():
            tick = self.next_tick(job)
            delay_s = tick.start_s + self.jitter_s(job) - self.clock()
            # asyncio.wait neither cancels nor raises on timeout: no cancellation can be lost
            # here (asyncio.timeout around Event.wait() can hang a cancelled task on 3.11)
            await asyncio.wait([stop_waiter], timeout=max(delay_s, 0.0))
            raise_if_cancelling()  # a Redis call of the last tick may have absorbed it
            if self._stopping.is_set():
                return
            await self.run_tick(job, tick)

    async def run_tick(self, job: Job, tick: Tick) -> Outcome:
        """Claim `tick` and, if this replica won it, run `job` once; never raises but for
        cancellation."""
        outcome = await self._attempt(job, tick)
        self.metrics.ticks.labels(job.name, outcome).inc()
        return outcome

    async def _attempt(self, job: Job, tick: Tick) -> Outcome:
        bound = log.bind(job=job.name, tick=tick.number)
        try:
            if self.clock() >= tick.end_s:
                bound.warning("tick_stale")
                return "stale"
            if not await self.locks.claim_tick(job.name, tick.number, interval_s=job.interval_s):
                return "claimed_elsewhere"
            async with self.locks.lease(job.name) as held:
                if not held:
                    bound.warning("job_overrun")
                    return "overrun"
                started_s = time.monotonic()
                await job.run(tick)
                self.metrics.run_seconds.labels(job.name).observe(time.monotonic() - started_s)
        except asyncio.CancelledError:
            raise
        except (SchedulerError, ApiCallError) as exc:  # expected (the API is down): no traceback
            bound.error("job_failed", error=str(exc), error_type=type(exc).__name__)
            return "failed"
        except Exception:  # noqa: BLE001 - a failing job is logged and retried next tick
            bound.exception("job_failed")
            return "failed"
        return "ran"
