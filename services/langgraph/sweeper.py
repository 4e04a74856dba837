"""The sweeper: recovery at start, then deadlines, stray answers and cancellations.

- At start, every living flow is kicked once: a flow cut off mid-step by a crash continues
  from its last checkpoint, a flow whose answer arrived meanwhile resumes.
- Every `sweep_interval_s`: flows whose answer is in the inbox, or whose deadline passed,
  are kicked (a timed-out wait fails its task).
- Every `cancel_poll_s`: the API's recently cancelled tasks that still have a flow here are
  resumed with a cancellation (the flow deletes its worker and stops); and stalled flows
  are continued: living, waiting for nothing, and with no live process holding their lease.
  Those are the flows of a replica that died mid-step (its lease expired) and the flows
  whose step raised on a passing failure (the API unreachable: the step is retried, not
  failed, and nothing else would advance it again until a replica restarts).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import structlog

from services.langgraph.errors import ApiCallError
from services.langgraph.runner import FlowRunner, KickReason
from shared.messaging.cancel import raise_if_cancelling

__all__ = ["Sweeper"]

log = structlog.get_logger("services.langgraph.sweeper")


class Sweeper:
    """Periodic duties of the langgraph actor; `run()` until cancelled."""

    def __init__(self, runner: FlowRunner, *, parallel: int = 16) -> None:
        self.runner = runner
        self.store = runner.store
        self.settings = runner.deps.settings
        self.clock_s = runner.deps.clock_s
        self._slots = asyncio.Semaphore(parallel)
        self._last_cancel_poll_s = 0.0
        self._stalled_before: set[str] = set()

    async def run(self) -> None:
        """Recover, then sweep forever."""
        await self.recover()
        while True:
            raise_if_cancelling()  # a Redis call of the last sweep may have absorbed it
            # every interval, or at once when this process put an answer a waiting flow
            # takes (an integration turn given on)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.store.woken.wait(), self.settings.sweep_interval_s)
            self.store.woken.clear()
            try:
                await self.sweep()
            except Exception:
                raise_if_cancelling()
                log.exception("sweep_failed")

    async def recover(self) -> int:
        """Kick every living flow once; returns how many there were."""
        flows = await self.store.flows()
        await self._kick_all(flows, "sweep")
        if flows:
            log.info("flows_recovered", count=len(flows))
        return len(flows)

    async def sweep(self) -> None:
        """One pass: answered or overdue waits, then (now and then) cancellations."""
        waits = await self.store.waits()
        task_ids = list(waits)
        answered = await self.store.answered([waits[t].request_id for t in task_ids])
        now_s = self.clock_s()
        due = [
            task_id
            for task_id, has_answer in zip(task_ids, answered, strict=True)
            if has_answer or now_s >= waits[task_id].deadline_at
        ]
        await self._kick_all(due, "sweep")
        if now_s - self._last_cancel_poll_s >= self.settings.cancel_poll_s:
            self._last_cancel_poll_s = now_s
            await self.sweep_cancelled()
            await self.sweep_stalled()

    async def sweep_stalled(self) -> list[str]:
        """Continue the flows that wait for nothing and whose lease no live process holds,
        seen so at this pass and the one before (not a moment between two holders): `kick`
        continues them from their last checkpoint. Returns their task ids."""
        flows, waits = await self.store.flows(), await self.store.waits()
        candidates = [task_id for task_id in flows if task_id not in waits]
        leased = await self.store.leased(candidates)
        seen = {t for t, held in zip(candidates, leased, strict=True) if not held}
        stalled = sorted(seen & self._stalled_before)
        self._stalled_before = seen
        if stalled:
            log.info("flows_stalled", count=len(stalled), task_ids=stalled[:10])
            await self._kick_all(stalled, "sweep")
        return stalled

    async def sweep_cancelled(self) -> None:
        """Stop the flows of tasks cancelled through the API."""
        flows = await self.store.flows()
        if not flows:
            return
        try:
            cancelled = await self.runner.deps.api.cancelled_task_ids()
        except ApiCallError as error:
            log.warning("cancel_poll_failed", error=str(error))
            return
        await self._kick_all([t for t in flows if t in cancelled], "cancelled")

    async def _kick_all(self, task_ids: Iterable[str], reason: KickReason) -> None:
        await asyncio.gather(*(self._kick(task_id, reason) for task_id in task_ids))

    async def _kick(self, task_id: str, reason: KickReason) -> None:
        async with self._slots:
            try:
                await self.runner.kick(task_id, reason=reason)
            except Exception:
                log.exception("kick_failed", task_id=task_id)
