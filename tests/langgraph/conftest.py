"""The langgraph test system: the real API (SQLite, in process), its outbox relay, real
Redis, real git remotes, fake scaffolder / worker-manager / infra-service on the real queues,
and the langgraph actor itself (in process, or as a subprocess in the restart tests)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from services.api.app import create_app
from services.api.auth.service import AuthService
from services.api.db import Database
from services.api.migrate import upgrade
from services.api.outbox.relay import OutboxRelay
from services.langgraph.api import ApiAdapter
from services.langgraph.main import LanggraphActor, open_actor
from services.langgraph.ports import GitPort
from services.langgraph.settings import LanggraphSettings, StepTimeouts
from shared import registry
from shared.api_client import ApiClient
from shared.api_client.schemas import ProjectUpdate, UserCreate
from shared.contracts import (
    ProjectCreate,
    ProjectDTO,
    ProjectStatus,
    TaskCreate,
    TaskDTO,
    TaskStatus,
    TaskType,
)
from shared.git import GitSettings, LocalGitProvider
from shared.git.naming import repo_full_name
from shared.messaging import Bus
from shared.registry import Actor
from tests.langgraph.fakes import (
    FakeInfra,
    FakeScaffolder,
    FakeWorkerManager,
    running,
    scaffold_repo,
)
from tests.support.waiting import eventually

FINAL = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


def fast_settings(data_dir: Path, **timeouts: float) -> LanggraphSettings:
    """Settings with short intervals and deadlines for tests."""
    return LanggraphSettings(
        data_dir=data_dir,
        sweep_interval_s=0.1,
        cancel_poll_s=0.3,
        reclaim_idle_ms=1_000,
        lock_ttl_ms=2_000,
        turn_poll_s=0.2,
        timeouts=StepTimeouts(**{"health_check_s": 3.0, **timeouts}),
        git=GitSettings(repos_dir=data_dir / "repos"),
    )


@dataclass
class System:
    """Everything a flow test touches."""

    redis: aioredis.Redis
    database: Database
    admin: ApiClient
    service_key: str
    app: object
    git: LocalGitProvider
    settings: LanggraphSettings
    user_id: int
    scaffolder: FakeScaffolder
    workers: FakeWorkerManager
    infra: FakeInfra

    def client(self, key: str) -> ApiClient:
        """An in-process API client with a credential."""
        transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
        return ApiClient("http://api.test", key=key, transport=transport)

    async def project(
        self, name: str, *, scaffolded: bool = False, parallel_tasks: int = 100
    ) -> ProjectDTO:
        """A project of the test user; with a real scaffolded repository when asked. Its
        engineering tasks run `parallel_tasks` at once (these tests run many concurrent
        flows on one project; the API's task order would otherwise run them in turn)."""
        project = await self.admin.create_project(ProjectCreate(name=name), owner_id=self.user_id)
        await self.admin.update_project(project.id, ProjectUpdate(parallel_tasks=parallel_tasks))
        if scaffolded:
            own = repo_full_name("projects", project.id, project.name)
            url = await scaffold_repo(self.git, own)
            await self.admin.update_project(
                project.id, ProjectUpdate(status=ProjectStatus.SCAFFOLDING)
            )
            project = await self.admin.update_project(
                project.id, ProjectUpdate(status=ProjectStatus.SCAFFOLDED, repository_url=url)
            )
        return project

    async def task(self, project_id: str, spec: str, kind: TaskType = TaskType.ENGINEERING) -> str:
        """Create a task through the API (its message goes out through the outbox)."""
        created = await self.admin.create_task(
            TaskCreate(project_id=project_id, type=kind, spec=spec)
        )
        return created.id

    async def wait_final(self, task_id: str, *, timeout_s: float = 20.0) -> TaskDTO:
        """The task once it reached a final status."""
        async with asyncio.timeout(timeout_s):
            while True:
                task = await self.admin.get_task(task_id)
                if task.status in FINAL:
                    return task
                await asyncio.sleep(0.05)

    async def wait_all_final(
        self, task_ids: list[str], *, timeout_s: float = 60.0
    ) -> list[TaskDTO]:
        """The tasks once every one reached a final status (one list call per poll)."""
        wanted = set(task_ids)
        async with asyncio.timeout(timeout_s):
            while True:
                page = await self.admin.list_tasks(limit=200)
                found = {t.id: t for t in page.items if t.id in wanted}
                if len(found) == len(wanted) and all(t.status in FINAL for t in found.values()):
                    return [found[task_id] for task_id in task_ids]
                await asyncio.sleep(0.25)

    async def wait_idle(self, *, timeout_s: float = 10.0) -> None:
        """Until langgraph holds no living flow."""

        async def no_flows() -> bool:
            return not await self.redis.hlen("langgraph:flows")

        await eventually(no_flows, timeout_s=timeout_s)


@pytest.fixture
async def graph_system(redis_client: aioredis.Redis, tmp_path: Path) -> AsyncIterator[System]:
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
    graph_system = System(
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


@contextlib.asynccontextmanager
async def langgraph(
    graph_system: System, *, git: GitPort | None = None, **overrides: object
) -> AsyncIterator[LanggraphActor]:
    """The langgraph actor in process, on the system's API (service key), Redis and git
    (or another git provider: a GitHub provider on the fake GitHub)."""
    settings = (
        graph_system.settings.model_copy(update=overrides) if overrides else graph_system.settings
    )
    client = graph_system.client(graph_system.service_key)
    try:
        async with open_actor(
            settings, graph_system.redis, api=ApiAdapter(client), git=git or graph_system.git
        ) as actor:
            task = asyncio.create_task(actor.run(shutdown_grace_s=1.0))
            try:
                yield actor
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        await client.aclose()
