"""The system the chat tests talk to: the real API (HTTP, SQLite, outbox relay to Redis)
and the fake worker-manager and langgraph of `actors.py`."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
import uvicorn
from pydantic import SecretStr

from services.api.app import create_app
from services.api.auth.service import AuthService
from services.api.main import prepare_database
from services.api.outbox.relay import OutboxRelay
from services.api.projects.importer import importer_from_settings
from shared import registry
from shared.api_client import ApiClient
from shared.messaging import Bus
from shared.redis_server import free_port
from shared.secret_box import secret_box_from_settings
from shared.settings import ApiSettings, Settings
from tests.chat.actors import FakeLanggraph, FakeWorkerManager


@dataclass
class ChatSystem:
    """What a chat test needs: settings with an admin credential, the fakes, clients."""

    settings: Settings
    """Settings of a front door: the API's URL and an admin key."""
    redis_url: str
    admin_key: str
    service_key: str
    manager: FakeWorkerManager
    langgraph: FakeLanggraph

    def api(self, key: str | None = None) -> ApiClient:
        """A client of the running API (admin by default)."""
        return ApiClient(self.settings.api.base_url, key=key or self.admin_key)


class _Server(uvicorn.Server):
    """uvicorn without signal handling (the test runner owns the signals)."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]  # uvicorn's own signature
        yield


async def _start_api(
    settings: Settings, redis: aioredis.Redis
) -> tuple[asyncio.Task[None], Callable[[], Awaitable[None]]]:
    """The API app on its port with its outbox relay; returns the task and a graceful stop.

    (`run_api` only stops by cancellation, which leaves uvicorn's socket open in a test.)
    """
    database = await prepare_database(settings)
    wake = asyncio.Event()
    config = uvicorn.Config(
        create_app(
            database,
            relay_wake=wake,
            secret_box=secret_box_from_settings(settings),
            importer=importer_from_settings(settings),
        ),
        host=settings.api.host,
        port=settings.api.port,
        log_level="warning",
        lifespan="off",
    )
    server = _Server(config)
    relay = OutboxRelay(database, Bus(redis, actor=registry.Actor.API), wake=wake, poll_s=0.05)
    relaying = asyncio.create_task(relay.run())
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), "the API did not start"
        await asyncio.sleep(0.01)

    async def stop() -> None:
        server.should_exit = True
        await serving
        relaying.cancel()
        await asyncio.gather(relaying, return_exceptions=True)
        await database.close()

    return serving, stop


@contextlib.asynccontextmanager
async def chat_system(
    tmp_path: Path,
    redis_url: str,
    redis: aioredis.Redis,
    *,
    fail_create: bool = False,
    fake_manager: bool = True,
) -> AsyncIterator[ChatSystem]:
    """Start the API and the fake actors; stop them at the end."""
    service_key = "orc_" + secrets.token_urlsafe(24)
    api_settings = ApiSettings(
        port=free_port(),
        service_key=SecretStr(service_key),
        relay_poll_s=0.05,
        import_roots=[tmp_path / "sources"],
    )
    settings = Settings(data_dir=tmp_path, redis_url=redis_url, api=api_settings)
    database = await prepare_database(settings)
    try:
        async with database.sessionmaker() as session:
            _, admin_key = await AuthService(session).create_key("front door", "admin", None)
            await session.commit()
    finally:
        await database.close()
    api_task, stop_api = await _start_api(settings, redis)
    front_settings = settings.model_copy(
        update={"api": api_settings.model_copy(update={"key": SecretStr(admin_key)})}
    )
    service_api = ApiClient(settings.api.base_url, key=service_key)
    manager = FakeWorkerManager(redis, tmp_path / "workers", service_api, fail_create=fail_create)
    langgraph = FakeLanggraph(redis, service_api)
    if fake_manager:
        await manager.start()
    await langgraph.start()
    try:
        yield ChatSystem(front_settings, redis_url, admin_key, service_key, manager, langgraph)
    finally:
        await langgraph.stop()
        await manager.stop()
        await service_api.aclose()
        await stop_api()
        await asyncio.gather(api_task, return_exceptions=True)
