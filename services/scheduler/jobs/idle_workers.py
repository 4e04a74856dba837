"""Job `stop_idle_workers`: a `DeleteWorkerCommand` for each worker idle past `worker_idle_s`.

The worker-manager stops the worker and removes it from its registry; until then a marker
keeps the job from sending the command again before `worker_delete_retry_s`.
"""

from __future__ import annotations

import structlog

from services.scheduler import markers
from services.scheduler.deps import SchedulerDeps, queue_for
from services.scheduler.loop import Tick
from shared.contracts import DeleteWorkerCommand, new_id

__all__ = ["stop_idle_workers"]

log = structlog.get_logger("services.scheduler.jobs.idle_workers")

ACTION = "delete_worker"


async def stop_idle_workers(deps: SchedulerDeps, tick: Tick) -> None:
    """Ask the worker-manager to delete every worker idle for too long."""
    queue = queue_for(DeleteWorkerCommand)
    now_s = deps.clock()
    cutoff_s = now_s - deps.settings.worker_idle_s
    for worker in await deps.workers.idle_workers(inactive_since_s=cutoff_s):
        if await markers.is_marked(deps.redis, ACTION, worker.worker_id):
            continue
        command = DeleteWorkerCommand(request_id=new_id(), worker_id=worker.worker_id)
        await deps.publisher.publish(queue, command)
        await markers.mark(
            deps.redis, ACTION, worker.worker_id, ttl_s=deps.settings.worker_delete_retry_s
        )
        log.info(
            "idle_worker_stopped",
            worker_id=worker.worker_id,
            idle_s=round(now_s - worker.last_activity_s),
            request_id=command.request_id,
            tick=tick.number,
        )
