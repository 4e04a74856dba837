"""Run the `api` actor: migrate, register the configured service key, serve, relay the outbox.

`run_actor(ctx)` is what `orchestrator run api` and `orchestrator up` call (`run_api(settings,
ready=...)` is the same on bare settings); it returns when cancelled, after uvicorn finished
the requests in flight (within `shutdown_grace_s`) and the relay and probe were stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

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
from shared.actor import ActorContext, ActorStartError, run_parts
from shared.git.errors import ProviderError
from shared.git.provider import GitProvider
from shared.git.settings import build_provider
from shared.secret_box import secret_box_from_settings
from shared.settings import Settings

__all__ = ["ApiStartError", "run_actor", "run_api"]

log = logging.getLogger(__name__)

SERVICE_KEY_NAME = "service (configured)"


class ApiStartError(ActorStartError):
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
    background: dict[str, Callable[[], Awaitable[None]]] = {}
    try:
        if settings.api.relay_enabled:
            if not settings.redis_url:
                raise ApiStartError("the outbox relay needs REDIS_URL (or relay_enabled=false)")
            redis = aioredis.Redis.from_url(settings.redis_url)
            relay = OutboxRelay(
                database, _publisher(redis), wake=wake, poll_s=settings.api.relay_poll_s
            )
            background["outbox-relay"] = relay.run
        if settings.metrics.enabled and settings.metrics.app_probe_s > 0:
            probe = AppProbe(
                database,
                interval_s=settings.metrics.app_probe_s,
                timeout_s=settings.metrics.app_probe_timeout_s,
            )
            app.state.app_probe = probe  # the console shows its last answers
            background["app-probe"] = probe.run
        await run_parts(
            registry.Actor.API.value,
            consumers=[_Serving(server)],
            background=background,
            shutdown_grace_s=settings.shutdown_grace_s,
            ready=ready,
            ready_when=lambda: bool(server.started),
        )
    finally:
        if redis is not None:
            await redis.aclose()
        await close_console(app)
        await database.close()


class _Serving:
    """uvicorn as a part of the actor: stopping it ends its accepting; the requests in
    flight finish (within the actor's grace)."""

    def __init__(self, server: uvicorn.Server) -> None:
        self.server = server

    def stop(self, *, grace_s: float | None = None) -> None:
        """uvicorn finishes the requests in flight, then `run()` returns."""
        self.server.should_exit = True

    async def run(self) -> None:
        """Serve until stopped."""
        await _serve(self.server)
        if not self.server.started:
            raise ApiStartError("uvicorn stopped before it started")


async def _serve(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit as error:  # uvicorn exits the process when it cannot bind
        raise ApiStartError(f"uvicorn could not start (exit {error.code})") from None


def _publisher(redis: aioredis.Redis) -> OutboxPublisher:
    """The messaging runtime's `Bus`, publishing as the `api` actor."""
    from shared.messaging import Bus

    return Bus(redis, actor=registry.Actor.API, publish_attempts=2)


async def run_actor(ctx: ActorContext) -> None:
    """The `api` actor; `ctx.api_ready` is set once it listens."""
    await run_api(ctx.settings, ready=ctx.api_ready)
