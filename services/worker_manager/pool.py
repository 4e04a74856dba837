"""Warm workers: wrappers started before any task asks, one pool per (runtime, agent, profile).

A warm worker is a wrapper process started with `WORKER_WARM=1` (`worker_wrapper/warm.py`):
its interpreter has imported everything and connected to Redis, and its registry record says
`warm`. `take` claims one atomically (`warm` → `starting`, see `WorkerRegistry.claim_warm`);
the manager then prepares the task's workspace in the worker's own directory and pushes the
task's environment to it (`bind`), and the wrapper goes on as a freshly started one. A
claimed worker never becomes `warm` again: it serves one task and ends with it.

The pool refills in the background after every take, after a warm worker dies (the pool's
background pass, every `pool.background_s` in the monitor's loop, on the records the
monitor's pass read), and after a manager restart (`adopt` keeps the previous run's warm
workers). A pool no create used for `pool.idle_s` shrinks to nothing. That pass drops a warm
worker (dead, silent, idle) only through an atomic check that it is still warm
(`WorkerRegistry.retire_warm`): one a create claimed meanwhile is the create's.

Waiting costs little: a warm worker heartbeats every `pool.heartbeat_s` (10 s, not the bound
workers' rate), a starting one is looked at less and less often, and, on the local runtime,
both run at the lowest CPU priority until claimed (`cpu_priority.py`). Starts are bounded by
`pool.spawn_concurrency`. A create that finds no warm worker ready (a burst larger than the
pool, the first create of a pool) starts its own worker at once, as without a pool, rather
than wait for the refill: a burst costs what it costs without a pool, less the warm ones.

Both runtimes are pooled. A container's mounts and environment are fixed when it is
created, so the Docker runtime mounts the warm worker's own directories from the start and
translates the binding to what the container sees (`WorkerRuntime.binding`); a task whose
remote a warm container cannot reach gets a worker started for it (`WorkerRuntime.can_pool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from redis.exceptions import RedisError

from services.worker_manager import cpu_priority
from services.worker_manager import workspace as files
from services.worker_manager.adapters import choose_adapter
from services.worker_manager.agent_env import with_orchestrator_on_path
from services.worker_manager.errors import (
    InvalidWorkerConfigError,
    WorkerManagerError,
    WorkerStartError,
)
from services.worker_manager.keys import bind_key, registry_key
from services.worker_manager.registry import WARM_STATUSES, WorkerRecord
from services.worker_manager.runtime import WorkerSpec
from shared import registry as queues

if TYPE_CHECKING:
    from services.worker_manager.manager import WorkerManager

__all__ = ["PoolKey", "WarmPool"]

log = structlog.get_logger("services.worker_manager")

PoolKey = tuple[str, str]
"""(agent, profile) of one pool (the runtime is the manager's)."""
_BIND_TTL_S = 60
_POLL_S = 0.05
"""How often a starting warm worker's record is read at first (a refill in the background;
a create takes a worker that became warm without waiting for this look)..."""
_POLL_MAX_S = 0.25
"""... and at most, growing by half each time."""


def input_stream_of(worker_id: str) -> str:
    """`worker:{id}:input` of a worker."""
    return queues.get("worker:{id}:input").format(id=worker_id)


def parse_key(text: str) -> PoolKey:
    """`agent/profile` → (agent, profile)."""
    agent, _, profile = text.partition("/")
    if not agent or not profile:
        raise ValueError(f"invalid pool {text!r}: write it as agent/profile")
    return agent, profile


@dataclass
class WarmPool:
    """The warm workers of one manager."""

    manager: WorkerManager
    ready: dict[PoolKey, list[str]] = field(default_factory=dict)
    """Warm workers per pool, oldest first."""
    starting: dict[PoolKey, int] = field(default_factory=dict)
    used_at: dict[PoolKey, float] = field(default_factory=dict)
    """Pools in use → when a create last took from it."""
    spawning: dict[str, PoolKey] = field(default_factory=dict)
    """Warm workers being started → their pool (one may report `warm` before its start
    notices: a create claims it then, without waiting for the start's next look)."""
    _taken_early: set[str] = field(default_factory=set)
    """Workers a create claimed while their start still ran (see `_claim_ready`)."""
    _spawns: asyncio.Semaphore | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _checked_at: float | None = None
    """When the background pass last ran (monotonic)."""

    @property
    def size(self) -> int:
        """Warm workers wanted per pool."""
        return self.manager.settings.pool.size

    @property
    def enabled(self) -> bool:
        """True when creates go through the pool (a size)."""
        return self.size > 0

    def prewarmed(self) -> set[PoolKey]:
        """The pools kept full even when unused."""
        return {parse_key(text) for text in self.manager.settings.pool.prewarm}

    # taking -------------------------------------------------------------------------------

    async def take(self, agent: str, profile: str) -> WorkerRecord | None:
        """Claim a warm worker of the pool when one is ready, else None (the create starts
        its own worker at once, as without a pool, rather than queue behind the refill);
        either way the pool is topped up in the background."""
        key = (agent, profile)
        self.used_at[key] = time.monotonic()
        try:
            return await self._claim_ready(key)
        finally:
            self.fill(key)

    async def _claim_ready(self, key: PoolKey) -> WorkerRecord | None:
        queue = self.ready.setdefault(key, [])
        while queue:
            worker_id = queue.pop(0)
            claimed = await self._claim(worker_id)
            if claimed is not None:
                return claimed
        for worker_id in [w for w, k in self.spawning.items() if k == key]:
            claimed = await self._claim(worker_id)
            if claimed is not None:
                # its start, still running or just ended, must not count it as ready
                self._taken_early.add(worker_id)
                if worker_id in queue:
                    queue.remove(worker_id)
                return claimed
        return None

    async def _claim(self, worker_id: str) -> WorkerRecord | None:
        """The worker's record when this call claimed it (`warm` → `starting`) and its
        process runs; None when it was not warm (still warming, died and dropped, stopped by
        a shrink) or is dead (then dropped)."""
        if not await self.manager.registry.claim_warm(worker_id):
            return None
        record = await self.manager.registry.get(worker_id)
        if (
            record is not None
            and record.runtime_ref
            and await self.manager.runtime.is_alive(record.runtime_ref)
        ):
            restoring = time.monotonic()
            await self._set_priority(record.runtime_ref, idle=False)  # before its task starts
            log.debug(
                "warm_worker_claimed",
                worker_id=worker_id,
                priority_ms=round((time.monotonic() - restoring) * 1000, 1),
            )
            return record
        await self._drop(worker_id, record, "the warm worker was gone when claimed")
        return None

    async def bind(self, record: WorkerRecord, env: dict[str, str], *, go: bool = False) -> None:
        """Hand a claimed worker its task's environment, as the runtime's worker sees it
        (popped by the wrapper at once; it expires from Redis if the wrapper died before
        popping it); with `go` (its workspace is ready already) it is released in the same
        round trip (see `release`)."""
        worker_id = record.worker_id
        spec = WorkerSpec(
            worker_id=worker_id,
            manager_id=self.manager.settings.manager_id,
            env=env,
            worker_dir=self.manager.settings.data_dir / worker_id,
            workspace=Path(record.workspace),
            session_dir=Path(record.session_dir),
            limits=self.manager.settings.limits,
        )
        env = await self.manager.runtime.binding(spec, record.runtime_ref)
        key = bind_key(worker_id)
        async with self.manager.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.rpush(key, json.dumps(env))
            if go:
                pipe.rpush(key, "go")
            pipe.expire(key, _BIND_TTL_S)
            await pipe.execute()

    async def release(self, worker_id: str) -> None:
        """Let a bound worker start serving (its workspace is ready): it reports `running`."""
        key = bind_key(worker_id)
        async with self.manager.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, "go")
            pipe.expire(key, _BIND_TTL_S)
            await pipe.execute()

    # filling ------------------------------------------------------------------------------

    def fill(self, key: PoolKey) -> None:
        """Start warm workers in the background until the pool holds `size` (ready and
        starting ones count)."""
        wanted = self.size
        have = len(self.ready.get(key, [])) + self.starting.get(key, 0)
        for _ in range(max(wanted - have, 0)):
            self.starting[key] = self.starting.get(key, 0) + 1
            task = asyncio.create_task(self._start_one(key), name=f"warm-{key[0]}-{key[1]}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def fill_all(self) -> None:
        """Top up every pool in use and every prewarmed one."""
        if not self.enabled:
            return
        for key in set(self.used_at) | self.prewarmed():
            self.used_at.setdefault(key, time.monotonic())
            self.fill(key)

    async def _start_one(self, key: PoolKey) -> None:
        if self._spawns is None:
            self._spawns = asyncio.Semaphore(self.manager.settings.pool.spawn_concurrency)
        refill = False
        try:
            async with self._spawns:
                worker_id = await self._spawn(key)
            if worker_id is not None and worker_id not in self._taken_early:
                self.ready.setdefault(key, []).append(worker_id)
            else:  # taken by a create as it became warm (or stopped): top up again
                self._taken_early.discard(worker_id or "")
                refill = True
        except (WorkerManagerError, RedisError, OSError) as exc:
            log.warning("warm_worker_start_failed", agent=key[0], profile=key[1], error=str(exc))
            await asyncio.sleep(1.0)  # a failing start is not retried in a tight loop
        finally:
            self.starting[key] -= 1
        if refill and key in self.used_at and self.enabled:
            self.fill(key)

    async def _spawn(self, key: PoolKey) -> str | None:
        manager, settings = self.manager, self.manager.settings
        worker_id = f"warm-{uuid.uuid4().hex[:12]}"
        worker_dir = settings.data_dir / worker_id
        now = time.time()
        record = WorkerRecord(
            worker_id=worker_id,
            name="warm",
            agent=key[0],
            adapter="",
            runtime=manager.runtime.name,
            manager_id=settings.manager_id,
            status="warming",
            profile=key[1],
            workspace=str(worker_dir / "workspace"),
            session_dir=str(worker_dir / "session"),
            created_at=now,
            last_activity_at=now,
        )
        env = files.allowlisted_env(files.process_env(), settings.env_allowlist, {})
        env["PATH"] = with_orchestrator_on_path(env.get("PATH"))
        # waiting, it beats (and wakes) seldom; its binding carries the bound workers' rate
        beat_s = min(settings.pool.heartbeat_s, settings.heartbeat_timeout_s / 3)
        env.update(
            {
                "WORKER_WARM": "1",
                "WORKER_ID": worker_id,
                "WORKER_REDIS_URL": manager.redis_url,
                "WORKER_REGISTRY_KEY": registry_key(worker_id),
                "WORKER_BIND_KEY": bind_key(worker_id),
                "WORKER_HEARTBEAT_INTERVAL_S": str(beat_s),
                "WORKER_HEARTBEAT_TIMEOUT_S": str(settings.heartbeat_timeout_s),
            }
        )
        with contextlib.suppress(InvalidWorkerConfigError):  # the create will say why
            env["WORKER_ADAPTER"] = choose_adapter(settings, key[0])  # imported while warm
        self.spawning[worker_id] = key
        try:
            await manager.registry.put(record)
            if settings.redis_acl:  # its own user from the start; re-issued at bind
                env["WORKER_REDIS_URL"] = await manager.redis_users.issue(
                    worker_id, None, manager.redis_url
                )
            spec = WorkerSpec(
                worker_id=worker_id,
                manager_id=settings.manager_id,
                env=env,
                worker_dir=worker_dir,
                workspace=worker_dir / "workspace",
                session_dir=worker_dir / "session",
                limits=settings.limits,
            )
            try:
                ref = await manager.runtime.start(spec)
            except WorkerStartError as exc:
                await self._drop(worker_id, None, str(exc))
                raise
            await manager.registry.update(worker_id, runtime_ref=ref)
            await self._set_priority(ref, idle=True)  # its imports yield to the tasks' work
            deadline = time.monotonic() + settings.start_timeout_s
            poll_s = _POLL_S
            while time.monotonic() < deadline:
                current = await manager.registry.get(worker_id)
                if current is None or current.status not in WARM_STATUSES:
                    return None  # stopped by a shrink or a shutdown meanwhile
                if current.status == "warm":
                    log.info("warm_worker_ready", worker_id=worker_id, agent=key[0])
                    return worker_id
                if not await manager.runtime.is_alive(ref):
                    detail = (await manager.runtime.exit_info(ref)).detail
                    await self._drop(worker_id, current, detail)
                    raise WorkerStartError(f"warm worker {worker_id} exited: {detail}")
                await asyncio.sleep(poll_s)
                poll_s = min(poll_s * 1.5, _POLL_MAX_S)
            await self._drop(worker_id, await manager.registry.get(worker_id), "not ready in time")
            raise WorkerStartError(f"warm worker {worker_id} was not ready in time")
        finally:
            self.spawning.pop(worker_id, None)

    async def _set_priority(self, ref: str, *, idle: bool) -> None:
        """The lowest CPU priority for a warm worker of the local runtime (`idle`), or the
        manager's back (`pool.idle_priority`; never fails a start or a claim)."""
        if not self.manager.settings.pool.idle_priority or self.manager.runtime.name != "local":
            return
        pid = cpu_priority.pid_of_ref(ref)
        if pid is not None:
            if idle:
                await cpu_priority.lower(pid)
            else:
                await cpu_priority.restore(pid)

    async def _drop(self, worker_id: str, record: WorkerRecord | None, detail: str) -> None:
        """Stop a warm worker's process, fail its record, release what it held, remove it."""
        manager = self.manager
        for queue in self.ready.values():
            if worker_id in queue:
                queue.remove(worker_id)
        if record is not None and record.runtime_ref:
            with contextlib.suppress(WorkerManagerError):
                await manager.runtime.stop(record.runtime_ref, grace_s=0)
        await manager.registry.finish(worker_id, "failed", error=detail)
        await manager.release(worker_id)
        await self._forget_input(worker_id)
        await asyncio.to_thread(files.remove_tree, manager.settings.data_dir / worker_id)
        log.info("warm_worker_dropped", worker_id=worker_id, reason=detail)

    async def _retire(self, worker_id: str, record: WorkerRecord, reason: str) -> None:
        """Stop an unused warm worker on purpose (shrink, shutdown): `stopped`, not failed."""
        manager = self.manager
        for queue in self.ready.values():
            if worker_id in queue:
                queue.remove(worker_id)
        await manager.registry.finish(worker_id, "stopped", error=reason)
        if record.runtime_ref:
            with contextlib.suppress(WorkerManagerError):
                await manager.runtime.stop(
                    record.runtime_ref, grace_s=manager.settings.stop_grace_s
                )
        await manager.release(worker_id)
        await self._forget_input(worker_id)
        await asyncio.to_thread(files.remove_tree, manager.settings.data_dir / worker_id)

    async def _forget_input(self, worker_id: str) -> None:
        """Delete the input stream a warm worker readied while waiting (its consumer group):
        it never served, nobody else writes there."""
        with contextlib.suppress(RedisError):
            await self.manager.redis.delete(input_stream_of(worker_id))

    # watching -----------------------------------------------------------------------------

    def _mine(self, record: WorkerRecord) -> bool:
        settings = self.manager.settings
        return (
            record.status in WARM_STATUSES
            and record.manager_id == settings.manager_id
            and record.runtime == self.manager.runtime.name
        )

    async def adopt(self, owned: dict[str, str], records: list[WorkerRecord]) -> set[str]:
        """Keep the previous run's warm workers whose process runs (drop the others), among
        the unfinished `records`; answer the ids of every warm record of this manager (so
        the monitor leaves them alone)."""
        seen: set[str] = set()
        for record in records:
            if not self._mine(record):
                continue
            seen.add(record.worker_id)
            ref = owned.get(record.worker_id)
            if (
                ref is None
                or record.status != "warm"
                or not self.enabled
                or not await self.manager.runtime.is_current(ref)  # an image replaced since
            ):
                if ref is not None:
                    record = record.model_copy(update={"runtime_ref": ref})
                await self._drop(record.worker_id, record, "not adopted on manager start")
                continue
            await self.manager.registry.update(record.worker_id, runtime_ref=ref)
            key = (record.agent, record.profile)
            self.ready.setdefault(key, []).append(record.worker_id)
            self.used_at[key] = time.monotonic()
        if seen:
            log.info(
                "warm_workers_adopted", ready={f"{a}/{p}": q for (a, p), q in self.ready.items()}
            )
        return seen

    async def check_if_due(self, records: list[WorkerRecord]) -> None:
        """The background pass (`check`) when `pool.background_s` went by since the last."""
        now = time.monotonic()
        due = self._checked_at is None or (
            now - self._checked_at >= self.manager.settings.pool.background_s
        )
        if due:
            self._checked_at = now
            await self.check(records)

    async def check(self, records: list[WorkerRecord]) -> None:
        """One pass over the unfinished `records` (the monitor's read): drop dead or silent
        warm workers, shrink idle pools, refill the rest. A worker is dropped only when it is
        still warm at that moment (`retire_warm`, atomic): a create may have claimed it since
        the records were read, and then it is the create's (its process runs, or the create
        finds it dead itself)."""
        settings = self.manager.settings
        now = time.time()
        idle = {
            key
            for key in set(self.used_at) | set(self.ready)
            if key not in self.prewarmed()
            and time.monotonic() - self.used_at.get(key, 0.0) > settings.pool.idle_s
        }
        for record in records:
            if not self._mine(record) or record.worker_id in self.spawning:
                continue
            key = (record.agent, record.profile)
            if record.status == "warm" and (key in idle or not self.enabled):
                if await self.manager.registry.retire_warm(
                    record.worker_id, "stopped", error="warm pool idle"
                ):
                    await self._retire(record.worker_id, record, "warm pool idle")
                continue
            if not record.runtime_ref:
                continue
            if not await self.manager.runtime.is_alive(record.runtime_ref):
                detail = (await self.manager.runtime.exit_info(record.runtime_ref)).detail
                await self._drop_if_warm(record, f"warm worker died: {detail}")
                continue
            beat = record.heartbeat_at
            if beat and now - beat > settings.heartbeat_timeout_s:
                await self._drop_if_warm(record, f"no heartbeat for {now - beat:.0f} s")
        for key in idle:
            self.used_at.pop(key, None)
            log.info("warm_pool_shrunk", agent=key[0], profile=key[1])
        self.fill_all()

    async def _drop_if_warm(self, record: WorkerRecord, detail: str) -> None:
        """`_drop` a warm worker the pass found dead or silent, unless a create claimed it."""
        if await self.manager.registry.retire_warm(record.worker_id, "failed", error=detail):
            await self._drop(record.worker_id, record, detail)
        else:
            log.info("warm_worker_claimed_meanwhile", worker_id=record.worker_id, seen=detail)

    def stop_filling(self) -> None:
        """Cancel the warm starts in flight (the manager stops). A worker cancelled while
        warming is left to the next run, which drops what it did not see become warm; none
        of this run's starts outlives it to refill a pool nobody serves any more."""
        for task in list(self._tasks):
            task.cancel()

    async def drain(self, reason: str) -> None:
        """Stop every warm worker of this manager (shutdown with `stop_workers_on_exit`)."""
        self.stop_filling()
        for record in await self.manager.registry.active():
            if self._mine(record):
                await self._retire(record.worker_id, record, reason)
