"""Job `provision_servers`: a `ProvisionerMessage` for each server waiting for setup.

A server stays `pending_setup` until infra-service picks it up, so a marker keeps the job from
triggering it again before `provision_retry_s` (then it is triggered again: the message may
have been lost with a consumer that never came up).
"""

from __future__ import annotations

import structlog

from services.scheduler import markers
from services.scheduler.deps import SchedulerDeps, queue_for
from services.scheduler.loop import Tick
from shared.api_client.schemas import ServerStatus
from shared.contracts import ProvisionerMessage

__all__ = ["provision_servers"]

log = structlog.get_logger("services.scheduler.jobs.provisioning")

ACTION = "provision"


async def provision_servers(deps: SchedulerDeps, tick: Tick) -> None:
    """Publish a provisioning request for every `pending_setup` server not triggered lately."""
    queue = queue_for(ProvisionerMessage)
    for server in await deps.api.list_servers(ServerStatus.PENDING_SETUP):
        if await markers.is_marked(deps.redis, ACTION, server.handle):
            continue
        message = ProvisionerMessage(server_handle=server.handle)
        await deps.publisher.publish(queue, message)
        await markers.mark(deps.redis, ACTION, server.handle, ttl_s=deps.settings.provision_retry_s)
        log.info(
            "provisioning_triggered",
            server=server.handle,
            request_id=message.request_id,
            tick=tick.number,
        )
