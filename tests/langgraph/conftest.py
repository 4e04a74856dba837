"""The langgraph test system: the real API (SQLite, in process), its outbox relay, real
Redis, real git remotes, fake scaffolder / worker-manager / infra-service on the real queues,
and the langgraph actor itself (in process, or as a subprocess in the restart tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from services.api.app import create_app
from services.api.auth.service import AuthService
from services.api.db import Database
from services.api.migrate import upgrade
from services.api.outbox.relay import OutboxRelay
from shared import registry
from shared.api_client import ApiClient
from shared.api_client.schemas import UserCreate
from shared.git import LocalGitProvider
from shared.messaging import Bus
from shared.registry import Actor
from tests.langgraph.fakes import (
    FakeInfra,
    FakeScaffolder,
    FakeWorkerManager,
    running,
)
from tests.support.langgraph import GraphSystem, fast_settings


@pytest.fixture
async def graph_system(redis_client: aioredis.Redis, tmp_path: Path) -> AsyncIterator[GraphSystem]:
    """The system without langgraph running (tests start it with `langgraph(system)`)."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'api.db'}")
    await upgrade(database)
    async with database.sessionmaker() as session:
        auth = AuthService(session)
        _, admin_key = await auth.create_key("admin", "admin", None)
        _, service_key = await auth.create_key("langgraph", "service", None)
        await session.commit()
    wake = asyncio.Event()
    app = create_app(database, relay_wake=wake)
    admin = ApiClient("http://api.test", key=admin_key, transport=httpx.ASGITransport(app=app))
    user = await admin.create_user(UserCreate(telegram_id=4242))
    git = LocalGitProvider(tmp_path / "repos")
    relay = OutboxRelay(database, Bus(redis_client, actor=Actor.API), wake=wake, poll_s=0.5)
    scaffolder = FakeScaffolder(git, admin)
    workers = FakeWorkerManager(
        Bus(redis_client, actor=Actor.WORKER_MANAGER), tmp_path / "work", redis=redis_client
    )
    infra = FakeInfra()
    graph_system = GraphSystem(
        redis_client, database, admin, service_key, app, git,
        fast_settings(tmp_path / "data"), user.id, scaffolder, workers, infra,
    )  # fmt: skip
    scaffolder_bus = Bus(redis_client, actor=Actor.SCAFFOLDER)
    infra_bus = Bus(redis_client, actor=Actor.INFRA_SERVICE)
    consumers = [
        scaffolder_bus.consumer(registry.get("scaffolder:queue").name, scaffolder.handle),
        workers.bus.consumer(registry.get("worker:commands").name, workers.handle, concurrency=64),
        infra_bus.consumer(registry.get("ansible:deploy:queue").name, infra.handle),
    ]
    relay_task = asyncio.create_task(relay.run())
    try:
        async with running(*consumers):
            yield graph_system
    finally:
        relay_task.cancel()
        await asyncio.gather(relay_task, return_exceptions=True)
        await infra.close()
        await admin.aclose()
        await database.close()
