"""Watching workers: adoption on start, death detection, idle reaping.

On start the manager looks for the workers of its previous run (same `manager_id`): live
ones are adopted (or removed when `adopt_on_start` is off), records whose process is gone
are marked failed, and processes without a live record are stopped. Then, every
`monitor_interval_s`, a worker whose process died or whose heartbeat went stale is marked
failed and reported (log, and a progress event of its task), a worker idle past
`idle_timeout_s` is stopped, and the API keys of workers that are no longer live are revoked
(those a failed or missed revocation left behind).
"""

from __future__ import annotations

import asyncio
import time

import structlog
from redis.exceptions import RedisError

from services.worker_manager.errors import WorkerManagerError
from services.worker_manager.manager import WorkerManager
from services.worker_manager.registry import WorkerRecord
from shared.messaging.cancel import raise_if_cancelling
from shared.observability.metrics import SystemMetrics

__all__ = ["WorkerMonitor"]

log = structlog.get_logger("services.worker_manager")


class WorkerMonitor:
    """Keeps the registry true to the runtime."""

    def __init__(self, manager: WorkerManager) -> None:
        self.manager = manager
        self.settings = manager.settings
        self.registry = manager.registry
        self.runtime = manager.runtime

    def _mine(self, record: WorkerRecord) -> bool:
        return (
            record.is_live
            and record.manager_id == self.settings.manager_id
            and record.runtime == self.runtime.name
        )

    async def adopt(self) -> tuple[list[str], list[str]]:
        """Adopt (or remove) the previous run's workers; answer (adopted, failed or removed)."""
        owned = await self.runtime.list_owned(self.settings.manager_id)
        adopted: list[str] = []
        dropped: list[str] = []
        await self.registry.reindex()  # the one full read: later passes read the active set
        records = await self.registry.active()
        known: set[str] = await self.manager.pool.adopt(owned, records)
        for record in records:
            if not self._mine(record):
                continue
            known.add(record.worker_id)
            ref = owned.get(record.worker_id)
            if ref is None:
                await self._failed(record, "the worker's process was gone when the manager started")
                dropped.append(record.worker_id)
            elif self.settings.adopt_on_start:
                await self.registry.update(record.worker_id, runtime_ref=ref)
                adopted.append(record.worker_id)
            else:
                await self.manager.delete(record.worker_id, reason="removed on manager start")
                dropped.append(record.worker_id)
        for worker_id, ref in owned.items():
            if worker_id not in known:
                log.warning("orphan_worker_stopped", worker_id=worker_id)
                await self.runtime.stop(ref, grace_s=self.settings.stop_grace_s)
                dropped.append(worker_id)
        log.info("workers_adopted", adopted=adopted, dropped=dropped)
        self.manager.pool.fill_all()
        return adopted, dropped

    async def delete_all(self, *, reason: str) -> list[str]:
        """Delete every live worker of this manager at once (and stop its warm ones); answer
        the ids of the live ones."""
        await self.manager.pool.drain(reason)
        mine = [record.worker_id for record in await self.registry.active() if self._mine(record)]
        results = await asyncio.gather(
            *(self.manager.delete(worker_id, reason=reason) for worker_id in mine),
            return_exceptions=True,
        )
        for worker_id, result in zip(mine, results, strict=True):
            if isinstance(result, Exception):
                log.warning("worker_delete_failed", worker_id=worker_id, error=repr(result))
        log.info("workers_deleted_on_exit", workers=mine)
        return mine

    async def _failed(self, record: WorkerRecord, detail: str) -> None:
        await self.manager.mark_failed(record, detail)

    async def check_once(self) -> None:
        """One pass: mark dead workers failed, stop idle ones, revoke leftover keys; every
        `pool.background_s`, the warm pool's pass too. It reads the unfinished workers only
        (`WorkerRegistry.active`, two round trips), and a worker's record again only when
        something is to be done about it."""
        now = time.time()
        records = await self.registry.active()
        mine = [record for record in records if self._mine(record)]
        self._observe(mine)
        for record in mine:
            if record.worker_id in self.manager.busy:
                continue
            alive = not record.runtime_ref or await self.runtime.is_alive(record.runtime_ref)
            beat = record.heartbeat_at
            silent = bool(beat) and now - beat > self.settings.heartbeat_timeout_s
            idle_s = now - max(record.last_activity_at, record.created_at)
            idle = (
                self.settings.idle_timeout_s > 0
                and record.status == "running"
                and idle_s > self.settings.idle_timeout_s
            )
            if alive and not silent and not idle:
                continue
            if await self.manager.being_deleted(record.worker_id):
                continue  # a delete (here or at another replica): its stop is not a death
            current = await self.registry.get(record.worker_id)
            if current is None or not current.is_live:
                continue  # stopped (deleted) since this pass read the registry
            if not alive:
                detail = (await self.runtime.exit_info(record.runtime_ref)).detail
                await self._failed(record, detail)
                await self.runtime.stop(record.runtime_ref, grace_s=0)  # its leftovers
            elif silent:
                await self.runtime.stop(record.runtime_ref, grace_s=0)
                await self._failed(record, f"no heartbeat for {now - beat:.0f} s")
            else:
                await self.manager.delete(record.worker_id, reason=f"idle for {idle_s:.0f} s")
        await self.manager.pool.check_if_due(records)
        active = {record.worker_id for record in records}

        async def is_live(worker_id: str) -> bool:
            # unfinished at this pass's read: kept (a finish releases its own keys); any
            # other (created since the read, or finished) is read again before a revoke
            return worker_id in active or await self.manager.is_live(worker_id)

        await self.manager.api_keys.sweep(is_live)
        if self.settings.redis_acl:
            await self.manager.redis_users.sweep(is_live)

    @staticmethod
    def _observe(records: list[WorkerRecord]) -> None:
        """`orchestrator_workers{state}` and `orchestrator_worker_pool_size` of this manager."""
        metrics = SystemMetrics.default()
        counts = dict.fromkeys(("starting", "running", "busy", "stopped", "failed"), 0)
        for record in records:
            counts[record.status] = counts.get(record.status, 0) + 1
        for state, count in counts.items():
            metrics.workers.labels(state).set(count)
        metrics.worker_pool_size.set(sum(1 for record in records if record.is_live))

    async def run(self) -> None:
        """Check every `monitor_interval_s` until cancelled; errors are logged, never fatal."""
        while True:
            try:
                await self.check_once()
            except (RedisError, OSError, WorkerManagerError) as exc:
                log.warning("monitor_pass_failed", error=str(exc))
            raise_if_cancelling()  # a Redis call may have absorbed it
            await asyncio.sleep(self.settings.monitor_interval_s)
