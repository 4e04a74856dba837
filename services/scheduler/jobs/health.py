"""Job `check_server_health`: probe ready and unreachable servers, record what changed.

- a `ready` server that fails `unreachable_after_failures` probes in a row is marked
  `unreachable` through the API;
- an `unreachable` server that answers again is re-provisioned with `is_recovery=True`
  (infra-service brings it back to `ready` and redeploys its services), at most once per
  `recovery_retry_s`.
"""

from __future__ import annotations

import asyncio

import structlog

from services.scheduler import keys, markers
from services.scheduler.deps import SchedulerDeps, queue_for
from services.scheduler.loop import Tick
from shared.api_client.schemas import ServerDTO, ServerStatus
from shared.contracts import ProvisionerMessage

__all__ = ["check_server_health"]

log = structlog.get_logger("services.scheduler.jobs.health")

ACTION = "recover"
_FAILURES_TTL_S = 86_400


async def check_server_health(deps: SchedulerDeps, tick: Tick) -> None:
    """Probe every ready or unreachable server (concurrently, bounded) and record changes."""
    servers = [
        *await deps.api.list_servers(ServerStatus.READY),
        *await deps.api.list_servers(ServerStatus.UNREACHABLE),
    ]
    limit = asyncio.Semaphore(deps.settings.health_concurrency)

    async def probe(server: ServerDTO) -> bool:
        async with limit:
            return await deps.probe.reachable(server)

    answers = await asyncio.gather(*(probe(server) for server in servers))
    for server, reachable in zip(servers, answers, strict=True):
        if server.status == ServerStatus.READY:
            await _record_ready(deps, server, reachable=reachable, tick=tick)
        elif reachable:
            await _recover(deps, server, tick=tick)


async def _record_ready(
    deps: SchedulerDeps, server: ServerDTO, *, reachable: bool, tick: Tick
) -> None:
    failures_key = keys.health_failures_key(server.handle)
    if reachable:
        await deps.redis.delete(failures_key)
        return
    failures = int(await deps.redis.incr(failures_key))
    await deps.redis.expire(failures_key, _FAILURES_TTL_S)
    if failures < deps.settings.unreachable_after_failures:
        log.info("server_probe_failed", server=server.handle, failures=failures, tick=tick.number)
        return
    await deps.api.set_server_status(server.handle, ServerStatus.UNREACHABLE)
    await deps.redis.delete(failures_key)
    log.warning("server_unreachable", server=server.handle, failures=failures, tick=tick.number)


async def _recover(deps: SchedulerDeps, server: ServerDTO, *, tick: Tick) -> None:
    if await markers.is_marked(deps.redis, ACTION, server.handle):
        return
    message = ProvisionerMessage(server_handle=server.handle, is_recovery=True)
    await deps.publisher.publish(queue_for(ProvisionerMessage), message)
    await markers.mark(deps.redis, ACTION, server.handle, ttl_s=deps.settings.recovery_retry_s)
    log.info(
        "server_recovery_triggered",
        server=server.handle,
        request_id=message.request_id,
        tick=tick.number,
    )
