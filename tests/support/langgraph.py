"""The langgraph tests' system: the API with its outbox relay, fake actors, the graphs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from services.api.db import Database
from services.langgraph.api import ApiAdapter
from services.langgraph.main import LanggraphActor, open_actor
from services.langgraph.ports import GitPort
from services.langgraph.settings import LanggraphSettings, StepTimeouts
from shared.api_client import ApiClient
from shared.api_client.schemas import ProjectCreateBody, ProjectUpdate
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
from tests.langgraph.fakes import (
    FakeInfra,
    FakeScaffolder,
    FakeWorkerManager,
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
class GraphSystem:
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
        self,
        name: str,
        *,
        scaffolded: bool = False,
        parallel_tasks: int = 100,
        modules: list[str] | None = None,
    ) -> ProjectDTO:
        """A project of the test user; with a real scaffolded repository when asked. Its
        engineering tasks run `parallel_tasks` at once (these tests run many concurrent
        flows on one project; the API's task order would otherwise run them in turn)."""
        body = (
            ProjectCreateBody.model_validate({"name": name, "modules": modules})
            if modules
            else ProjectCreate(name=name)
        )
        project = await self.admin.create_project(body, owner_id=self.user_id)
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


@contextlib.asynccontextmanager
async def langgraph(
    graph_system: GraphSystem, *, git: GitPort | None = None, **overrides: object
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
