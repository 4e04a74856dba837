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
from services.worker_wrapper.heartbeat import SCRIPTS, RegistryReporter, Release
from services.worker_wrapper.service import WrapperService
from services.worker_wrapper.session import SessionStore
from services.worker_wrapper.settings import WrapperSettings
from services.worker_wrapper.warm import IDLE_BLOCK_S, redis_client
from shared import registry
from shared.messaging import Bus

__all__ = ["input_stream_of", "prepare_input", "run_wrapper"]

log = structlog.get_logger("services.worker_wrapper")

_LONGEST_REQUEST_S = 4 * 3600
_GO = b"go"


def input_stream_of(worker_id: str) -> str:
    """`worker:{id}:input` of a worker."""
    return registry.get("worker:{id}:input").format(id=worker_id)


def _bus(redis: aioredis.Redis, worker_id: str) -> Bus:
    return Bus(redis, actor=registry.Actor.WORKER_WRAPPER, consumer_name=f"wrapper-{worker_id}")


async def prepare_input(redis: aioredis.Redis, worker_id: str) -> None:
    """What a warm wrapper can do for its serving ahead of any task (its id is known, its
    task is not): the consumer group of its input stream, the reporter's scripts loaded."""
    bus = _bus(redis, worker_id)
    stream = input_stream_of(worker_id)
    await bus.transport.ensure_group(stream, bus.default_group([stream]))
    for script in SCRIPTS:
        await redis.script_load(script)


async def run_wrapper(
    settings: WrapperSettings,
    *,
    redis: aioredis.Redis | None = None,
    groups_ready: bool = False,
) -> None:
    """Serve the worker's input stream until SIGTERM/SIGINT, then finish the current request.

    `redis`: a client to use (a warm wrapper's, when its binding kept the same URL; the
    caller closes it), else one is opened and closed here; `groups_ready`: its input's
    consumer group exists already (`prepare_input`)."""
    own_client = redis is None
    if redis is None:
        redis = redis_client(settings.redis_url)
    bus = _bus(redis, settings.id)
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
    consumer = bus.consumer(
        input_stream_of(settings.id),
        service.handle_input,
        concurrency=1,
        max_attempts=3,
        shutdown_timeout_s=_LONGEST_REQUEST_S,
    )

    def stop(reason: str = "signal") -> None:
        log.info("wrapper_stopping", worker_id=settings.id, reason=reason)
        service.stopping = True
        consumer.stop()

    def beat(first_after_s: float = 0.0) -> asyncio.Task[None]:
        return asyncio.create_task(
            reporter.beat_forever(
                settings.heartbeat_interval_s,
                orphan_after_s=settings.orphan_after_s,
                on_orphaned=stop,
                first_after_s=first_after_s,
            )
        )

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    heartbeat: asyncio.Task[None] | None = None
    try:
        if not groups_ready:
            await consumer.ensure_groups()
        if settings.ready_key:
            # released with its binding (the usual case): `go` and `running` in one trip
            started = await reporter.run_when_released(settings.ready_key, settings.started_key)
            if started == "wait":  # its workspace is still being made: beat meanwhile
                heartbeat = beat()
                started = await _go_ahead(redis, reporter, settings)
            else:
                heartbeat = beat(settings.heartbeat_interval_s)
            if started != "running":
                log.warning("worker_not_released", worker_id=settings.id, outcome=started)
                return
        else:
            heartbeat = beat()
            if not await reporter.status("running"):
                log.warning("worker_not_live_in_registry", worker_id=settings.id)
                return
        log.info("wrapper_ready", worker_id=settings.id, adapter=settings.adapter)
        await consumer.run()
    finally:
        if heartbeat is not None:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if own_client:
            await redis.aclose()
    log.info("wrapper_stopped", worker_id=settings.id)


async def _go_ahead(
    redis: aioredis.Redis, reporter: RegistryReporter, settings: WrapperSettings
) -> Release:
    """Wait (bound warm wrapper) for the manager's `go` (the workspace is ready), then
    report `running`. `refused` when anything else comes, or nothing within
    `orphan_after_s` (the manager is gone)."""
    assert settings.ready_key is not None
    # in reads of a few seconds, each well within the client's socket timeout
    deadline = asyncio.get_running_loop().time() + settings.orphan_after_s
    popped = None
    while popped is None:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            return "refused"
        block_s = max(min(IDLE_BLOCK_S, left), 0.01)  # a timeout of 0 would block for ever
        popped = await redis.blpop([settings.ready_key], timeout=block_s)
    if popped[1] != _GO:
        return "refused"
    return await reporter.run_when_released(settings.ready_key, settings.started_key, popped=True)
