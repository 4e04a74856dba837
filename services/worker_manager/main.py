"""Build the worker-manager's dependencies, adopt the previous run's workers, serve commands.

`run_worker_manager(settings, redis)` runs until cancelled; `run_actor(ctx)` is the same for
`orchestrator up` / `orchestrator run worker-manager`. Workers outlive the manager: the next
run adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import quote

import redis.asyncio as aioredis
import structlog

from services.worker_manager.api_keys import ApiClientKeyIssuer, WorkerApiKeys
from services.worker_manager.docker_runtime import DockerRuntime
from services.worker_manager.handlers import CommandHandlers
from services.worker_manager.invalid import InvalidCommandReplier
from services.worker_manager.local_runtime import LocalProcessRuntime
from services.worker_manager.manager import WorkerManager
from services.worker_manager.monitor import WorkerMonitor
from services.worker_manager.runtime import WorkerRuntime
from services.worker_manager.settings import WorkerManagerSettings
from shared import registry
from shared.actor import ActorContext, run_parts
from shared.api_client import ApiClient
from shared.messaging import Bus
from shared.settings import Settings

__all__ = [
    "api_client_for",
    "build_runtime",
    "run_actor",
    "run_worker_manager",
]

log = structlog.get_logger("services.worker_manager")

_SHUTDOWN_S = 10.0


def api_client_for(settings: Settings, manager: WorkerManagerSettings) -> ApiClient | None:
    """The manager's API client (to mint workers' keys), or None without a credential."""
    key = manager.api_key or settings.api.key or settings.api.service_key
    if key is None:
        return None
    return ApiClient(manager.api_url or settings.api.base_url, key=key.get_secret_value())


def build_runtime(settings: WorkerManagerSettings) -> WorkerRuntime:
    """The runtime the settings name."""
    if settings.runtime == "docker":
        return DockerRuntime(settings.docker, data_dir=settings.data_dir)
    return LocalProcessRuntime(settings.data_dir)


def url_of(redis: aioredis.Redis) -> str:
    """A URL that reaches the same server as `redis` (for worker processes)."""
    kwargs = redis.connection_pool.connection_kwargs
    auth = ""
    if kwargs.get("password"):
        auth = f"{quote(str(kwargs.get('username') or ''))}:{quote(str(kwargs['password']))}@"
    if kwargs.get("path"):
        return f"unix://{auth}{kwargs['path']}?db={kwargs.get('db', 0)}"
    host, port, db = kwargs.get("host", "localhost"), kwargs.get("port", 6379), kwargs.get("db", 0)
    return f"redis://{auth}{host}:{port}/{db}"


async def run_worker_manager(
    settings: Settings,
    redis: aioredis.Redis,
    *,
    redis_url: str | None = None,
    manager_settings: WorkerManagerSettings | None = None,
    runtime: WorkerRuntime | None = None,
) -> None:
    """Serve `worker:commands` until cancelled (workers keep running for the next run)."""
    worker_settings = manager_settings or WorkerManagerSettings.of(settings)
    worker_settings.data_dir.mkdir(parents=True, exist_ok=True)
    worker_settings = worker_settings.model_copy(
        update={"data_dir": worker_settings.data_dir.resolve()}
    )
    api = api_client_for(settings, worker_settings)
    try:
        manager = WorkerManager(
            settings=worker_settings,
            bus=Bus(redis, actor=registry.Actor.WORKER_MANAGER),
            redis=redis,
            runtime=runtime or build_runtime(worker_settings),
            redis_url=redis_url or url_of(redis),
            api_keys=WorkerApiKeys(redis, ApiClientKeyIssuer(api) if api is not None else None),
        )
        await _serve(manager, settings.shutdown_grace_s)
    finally:
        if api is not None:
            await api.aclose()


async def _serve(manager: WorkerManager, grace_s: float) -> None:
    bus, worker_settings = manager.bus, manager.settings
    monitor = WorkerMonitor(manager)
    await monitor.adopt()
    consumer = bus.consumer(
        registry.get("worker:commands").name,
        CommandHandlers(manager),
        concurrency=worker_settings.concurrency,
        on_invalid=InvalidCommandReplier(bus),
    )
    log.info("worker_manager_started", manager_id=worker_settings.manager_id)
    try:
        await run_parts(
            registry.Actor.WORKER_MANAGER.value,
            consumers=[consumer],
            background={"worker-monitor": monitor.run},
            shutdown_grace_s=grace_s,
        )
    finally:
        manager.pool.stop_filling()
        if worker_settings.stop_workers_on_exit:
            # shielded and bounded: this runs while the actor is being cancelled
            deleting = asyncio.ensure_future(monitor.delete_all(reason="manager shutdown"))
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(deleting), _SHUTDOWN_S)


async def run_actor(ctx: ActorContext) -> None:
    """The `worker-manager` actor for `orchestrator up` / `orchestrator run`."""
    redis = ctx.redis()
    try:
        await run_worker_manager(ctx.settings, redis, redis_url=ctx.redis_url)
    finally:
        await redis.aclose()
