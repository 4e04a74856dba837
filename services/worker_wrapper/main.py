"""Run one worker-wrapper: consume `worker:{id}:input` until SIGTERM, heartbeating meanwhile.

SIGTERM (or SIGINT) stops reading; the request in progress finishes and is answered; then
the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import redis.asyncio as aioredis
import structlog

from services.worker_wrapper.agents import build_agent
from services.worker_wrapper.heartbeat import RegistryReporter
from services.worker_wrapper.service import WrapperService
from services.worker_wrapper.session import SessionStore
from services.worker_wrapper.settings import WrapperSettings
from shared import registry
from shared.messaging import Bus

__all__ = ["run_wrapper"]

log = structlog.get_logger("services.worker_wrapper")

_LONGEST_REQUEST_S = 4 * 3600
_GO = b"go"


async def run_wrapper(settings: WrapperSettings) -> None:
    """Serve the worker's input stream until SIGTERM/SIGINT, then finish the current request."""
    redis: aioredis.Redis = aioredis.Redis.from_url(settings.redis_url)
    bus = Bus(redis, actor=registry.Actor.WORKER_WRAPPER, consumer_name=f"wrapper-{settings.id}")
    reporter = RegistryReporter(redis, settings.registry_key)
    service = WrapperService(
        settings=settings,
        bus=bus,
        agent=build_agent(settings),
        reporter=reporter,
        sessions=SessionStore(
            settings.session_dir, adapter=settings.adapter, ttl_s=settings.session_ttl_s
        ),
    )
    input_stream = registry.get("worker:{id}:input").format(id=settings.id)
    consumer = bus.consumer(
        input_stream,
        service.handle_input,
        concurrency=1,
        max_attempts=3,
        shutdown_timeout_s=_LONGEST_REQUEST_S,
    )

    def stop(reason: str = "signal") -> None:
        log.info("wrapper_stopping", worker_id=settings.id, reason=reason)
        service.stopping = True
        consumer.stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    await consumer.ensure_groups()
    heartbeat = asyncio.create_task(
        reporter.beat_forever(
            settings.heartbeat_interval_s,
            orphan_after_s=settings.orphan_after_s,
            on_orphaned=stop,
        )
    )
    try:
        if settings.ready_key and not await _go_ahead(redis, settings):
            return
        if not await reporter.status("running"):
            log.warning("worker_not_live_in_registry", worker_id=settings.id)
            return
        log.info("wrapper_ready", worker_id=settings.id, adapter=settings.adapter)
        await consumer.run()
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        await redis.aclose()
    log.info("wrapper_stopped", worker_id=settings.id)


async def _go_ahead(redis: aioredis.Redis, settings: WrapperSettings) -> bool:
    """Wait (bound warm wrapper) for the manager's `go`: the workspace is ready. False when
    anything else comes, or nothing within `orphan_after_s` (the manager is gone)."""
    assert settings.ready_key is not None
    popped = await redis.blpop([settings.ready_key], timeout=settings.orphan_after_s)
    if popped is None or popped[1] != _GO:
        log.warning("worker_not_released", worker_id=settings.id)
        return False
    return True
