"""Run the `api` actor: migrate, register the configured service key, serve, relay the outbox.

`run_api(settings)` is what `orchestrator run api` and `orchestrator up` call; it returns
when cancelled, after uvicorn stopped and the relay finished its current batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
import uvicorn

from services.api.app import create_app
from services.api.app_probe import AppProbe
from services.api.auth.service import AuthService
from services.api.console import close_console
from services.api.db import Database
from services.api.migrate import upgrade
from services.api.outbox.publisher import OutboxPublisher
from services.api.outbox.relay import OutboxRelay
from services.api.projects.importer import importer_from_settings
from shared import registry
from shared.git.errors import ProviderError
from shared.git.provider import GitProvider
from shared.git.settings import build_provider
from shared.secret_box import secret_box_from_settings
from shared.settings import Settings

__all__ = ["ApiStartError", "run_api"]

log = logging.getLogger(__name__)

SERVICE_KEY_NAME = "service (configured)"


class ApiStartError(RuntimeError):
    """The API could not start (the port is taken, the database refuses, ...)."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: whoever runs `run_api` decides on signals."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]  # uvicorn's own signature
        yield


async def prepare_database(settings: Settings) -> Database:
    """The database, migrated to the newest revision, with the configured service key."""
    database = Database(settings.effective_database_url)
    try:
        await upgrade(database)
        if settings.api.service_key is not None:
            async with database.sessionmaker() as session:
                secret = settings.api.service_key.get_secret_value()
                await AuthService(session).ensure_key(SERVICE_KEY_NAME, "service", secret)
                await session.commit()
    except BaseException:
        await database.close()
        raise
    return database


def _git_provider(settings: Settings) -> GitProvider | None:
    """The provider the console reads repositories through; None (no commits shown) when
    its settings cannot be used, e.g. a GitHub token reference that does not resolve."""
    try:
        return build_provider(settings.api.git, data_dir=settings.data_dir)
    except (ValueError, OSError, ProviderError) as error:
        log.warning("the console shows no commits: git provider unusable: %s", error)
        return None


async def run_api(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Serve the API (and its outbox relay) until cancelled; `ready` is set once it listens."""
    database = await prepare_database(settings)
    wake = asyncio.Event()
    app = create_app(
        database,
        relay_wake=wake,
        task_deadlines=settings.api.task_deadlines,
        max_body_bytes=settings.api.max_body_bytes,
        secret_box=secret_box_from_settings(settings),
        console=settings.api.console,
        redis_url=settings.redis_url,
        api_url=settings.api.base_url,
        monthly_budget_usd=settings.api.monthly_budget_usd,
        task_hold_usd=settings.api.task_hold_usd,
        auth_cache_ttl_s=settings.api.auth_cache_ttl_s,
        git=_git_provider(settings),
        git_owner=settings.api.git.owner,
        git_branch=settings.api.git.default_branch,
        importer=importer_from_settings(settings),
    )
    config = uvicorn.Config(
        app,
        host=settings.api.host,
        port=settings.api.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = _Server(config)
    redis: aioredis.Redis | None = None
    relay_task: asyncio.Task[None] | None = None
    probe_task: asyncio.Task[None] | None = None
    serving: asyncio.Task[None] | None = None
    try:
        if settings.api.relay_enabled:
            if not settings.redis_url:
                raise ApiStartError("the outbox relay needs REDIS_URL (or relay_enabled=false)")
            redis = aioredis.Redis.from_url(settings.redis_url)
            relay = OutboxRelay(
                database, _publisher(redis), wake=wake, poll_s=settings.api.relay_poll_s
            )
            relay_task = asyncio.create_task(relay.run(), name="outbox-relay")
        if settings.metrics.enabled and settings.metrics.app_probe_s > 0:
            probe = AppProbe(
                database,
                interval_s=settings.metrics.app_probe_s,
                timeout_s=settings.metrics.app_probe_timeout_s,
            )
            app.state.app_probe = probe  # the console shows its last answers
            probe_task = asyncio.create_task(probe.run(), name="app-probe")
        serving = asyncio.create_task(_serve(server), name="uvicorn")
        while not server.started:
            if serving.done():
                await serving
                raise ApiStartError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        log.info("api listening on %s", settings.api.base_url)
        if ready is not None:
            ready.set()
        await serving
    finally:
        server.should_exit = True  # uvicorn finishes in-flight requests, then returns
        for side_task in (relay_task, probe_task):
            if side_task is not None:
                side_task.cancel()
        pending = [task for task in (relay_task, probe_task, serving) if task is not None]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), timeout=10)
        if redis is not None:
            await redis.aclose()
        await close_console(app)
        await database.close()


async def _serve(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit as error:  # uvicorn exits the process when it cannot bind
        raise ApiStartError(f"uvicorn could not start (exit {error.code})") from None


def _publisher(redis: aioredis.Redis) -> OutboxPublisher:
    """The messaging runtime's `Bus`, publishing as the `api` actor."""
    from shared.messaging import Bus

    return Bus(redis, actor=registry.Actor.API, publish_attempts=2)
