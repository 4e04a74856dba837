"""run_actor end to end: a real API over HTTP (uvicorn, SQLite), real Redis, real git."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import uvicorn
from pydantic import SecretStr

from services.api.app import create_app
from services.api.auth.service import AuthService
from services.api.db import Database
from services.api.migrate import upgrade
from services.scaffolder.main import run_actor
from shared import registry
from shared.actor import ActorContext
from shared.api_client import ApiClient
from shared.api_client.schemas import UserCreate
from shared.contracts import BaseResult, ProjectCreate, ProjectStatus
from shared.git import LocalGitProvider
from shared.git.naming import repo_full_name
from shared.messaging import Bus
from shared.redis_server import free_port
from shared.settings import ApiSettings, Settings
from tests.support.scaffolder import make_message


@dataclass(frozen=True)
class LiveApi:
    """An API served over HTTP with a service key."""

    url: str
    service_key: str
    admin_key: str


@pytest.fixture
async def live_api(tmp_path: Path) -> AsyncIterator[LiveApi]:
    """The API app under uvicorn on a free port, on a fresh SQLite database."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'api.db'}")
    await upgrade(database)
    async with database.sessionmaker() as session:
        auth = AuthService(session)
        _, admin_key = await auth.create_key("admin", "admin", None)
        _, key = await auth.create_key("scaffolder", "service", None)
        await session.commit()
    port = free_port()
    config = uvicorn.Config(
        create_app(database), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(400):
        if server.started:
            break
        await asyncio.sleep(0.05)
    try:
        yield LiveApi(f"http://127.0.0.1:{port}", key, admin_key)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        await database.close()


async def test_run_actor_scaffolds_through_the_http_api(
    live_api: LiveApi, redis_url: str, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """`run_actor` consumes scaffolder:queue, pushes the scaffold and sets the project's status
    over HTTP; the result reaches the callback stream."""
    settings = Settings(
        data_dir=tmp_path / "data",
        api=ApiSettings(url=live_api.url, key=SecretStr(live_api.service_key)),
    )
    async with ApiClient(live_api.url, key=live_api.admin_key) as client:
        user = await client.create_user(UserCreate(telegram_id=7001))
        project = await client.create_project(ProjectCreate(name="Demo Shop"), owner_id=user.id)
        actor = asyncio.create_task(run_actor(ActorContext(settings, redis_url)))
        try:
            langgraph = Bus(redis_client, actor=registry.Actor.LANGGRAPH)
            results = registry.get("results:{actor}").format(actor="langgraph")
            message = make_message(
                project_id=project.id,
                project_name=project.name,
                repo_full_name=repo_full_name("projects", project.id, project.name),
                callback_stream=results,
            )
            await langgraph.publish(registry.get("scaffolder:queue").name, message)
            reply = await langgraph.wait_reply(results, message.request_id, timeout_s=60)
        finally:
            actor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await actor
        assert isinstance(reply, BaseResult)
        assert (reply.status, reply.error) == ("success", None)
        after = await client.get_project(project.id)
    assert after.status == ProjectStatus.SCAFFOLDED
    provider = LocalGitProvider(settings.data_dir / "repos")
    assert after.repository_url == provider.path_of(message.repo_full_name).as_uri()
    assert await provider.head_of(message.repo_full_name, "main") is not None
