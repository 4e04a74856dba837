"""Archived projects lose their deployment: the reconcile against the real API (in process,
SQLite) and the real playbooks on this machine, with real project processes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
import redis.asyncio as aioredis

from services.api.app import create_app
from services.api.auth.service import AuthService
from services.api.db import Database
from services.api.migrate import upgrade
from services.infra_service.ansible import PlaybookJob, PlaybookRun, PlaybookRunner, TaskListener
from services.infra_service.handlers import (
    InfraDeps,
    handle_ansible_deploy_message,
    handle_provisioner_message,
)
from services.infra_service.main import run_infra_service
from services.infra_service.reconcile import (
    ApiArchivedDeployments,
    Deployment,
    reconcile_archived,
    run_reconcile_loop,
)
from services.infra_service.servers import ApiServerLookup
from services.infra_service.settings import InfraSettings
from shared import registry
from shared.api_client import ApiClient
from shared.api_client.schemas import ProjectUpdate, ServerCreate, ServerStatus, UserCreate
from shared.contracts import (
    AnsibleDeployMessage,
    AnsibleDeployResult,
    ProjectCreate,
    ProjectDTO,
    ProjectStatus,
    ProvisionerMessage,
    TaskCreate,
    TaskType,
)
from shared.messaging import Bus
from shared.redis_server import free_port, port_free
from tests.support.infra_service import (
    app_files,
    gated_app,
    leftovers,
    listening_pid,
    make_deps,
    make_repo,
    make_settings,
    no_leftovers,
    stop_all_apps,
    until_listening,
)

pytestmark = pytest.mark.slow

RESULTS = registry.get("results:{actor}").format(actor="langgraph")


@dataclass
class CountingRunner:
    """The real runner, with the playbooks it ran recorded."""

    real: PlaybookRunner
    runs: list[str] = field(default_factory=list)

    async def run(self, job: PlaybookJob, on_task: TaskListener | None = None) -> PlaybookRun:
        """Record the playbook, then run it."""
        self.runs.append(job.playbook)
        return await self.real.run(job, on_task)


@dataclass
class Site:
    """A provisioned local server registered in a real API as `local`, with one free port."""

    settings: InfraSettings
    deps: InfraDeps
    runner: CountingRunner
    admin: ApiClient
    service: ApiClient
    port: int
    owner_id: int

    async def project(self, name: str) -> ProjectDTO:
        """A project, with the repository of a tiny app under `acme/<name>`."""
        make_repo(self.settings, f"acme/{name}", app_files("1"))
        return await self.admin.create_project(ProjectCreate(name=name), owner_id=self.owner_id)

    async def deploy(self, project: ProjectDTO) -> AnsibleDeployResult:
        """Allocate the project's port through the API and deploy it there."""
        allocation = await self.admin.allocate_port("local", project.id)
        return await handle_ansible_deploy_message(
            deploy_message(project, allocation.port), self.deps
        )

    async def archive(self, project: ProjectDTO) -> None:
        """Archive the project through the API."""
        await self.admin.update_project(project.id, ProjectUpdate(status=ProjectStatus.ARCHIVED))

    async def allocated(self) -> list[str]:
        """The projects holding a port on `local`."""
        return [a.project_id for a in await self.admin.list_allocations("local")]


def deploy_message(project: ProjectDTO, port: int) -> AnsibleDeployMessage:
    """A deploy of `acme/<name>` as the project on the local server."""
    return AnsibleDeployMessage(
        project_id=project.id,
        project_name=project.name,
        repo_full_name=f"acme/{project.name}",
        server_ip="127.0.0.1",
        port=port,
        github_token_ref="none",
        secrets_ref="none",
        callback_stream=RESULTS,
    )


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    """API (admin and service keys, one user) + a provisioned local server on a free port."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'api.db'}")
    await upgrade(database)
    async with database.sessionmaker() as session:
        auth = AuthService(session)
        _, admin_key = await auth.create_key("admin", "admin", None)
        _, service_key = await auth.create_key("infra", "service", None)
        await session.commit()
    app = create_app(database)
    transport = httpx.ASGITransport(app=app)
    admin = ApiClient("http://api.test", key=admin_key, transport=transport)
    service = ApiClient("http://api.test", key=service_key, transport=transport)
    owner = await admin.create_user(UserCreate(telegram_id=77))
    port = free_port()
    await admin.create_server(
        ServerCreate(
            handle="local",
            address="127.0.0.1",
            status=ServerStatus.READY,
            port_range_start=port,
            port_range_end=port,
        )
    )
    settings = make_settings(tmp_path / "infra", reconcile_interval_s=0.2)
    deps, _ = make_deps(settings)
    provisioned = await handle_provisioner_message(ProvisionerMessage(server_handle="local"), deps)
    assert provisioned.status == "success", provisioned.error
    runner = CountingRunner(deps.runner)
    deps = dataclasses.replace(deps, runner=runner, servers=ApiServerLookup(service, settings))
    try:
        yield Site(settings, deps, runner, admin, service, port, owner.id)
    finally:
        stop_all_apps(settings.local_base_dir)
        kill_leftovers(settings.data_dir)
        await service.aclose()
        await admin.aclose()
        await database.close()


def kill_leftovers(data_dir: Path) -> None:
    """Kill what runs from `data_dir` even without its pid files (a test that failed)."""
    for line in leftovers(data_dir):
        with contextlib.suppress(OSError):
            os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)


def project_pid(site: Site) -> int:
    """The pid of the process listening on the site's port."""
    pid = listening_pid(site.port)
    assert pid is not None, f"nothing listens on port {site.port}"
    return pid


async def answers(url: str) -> int:
    """The HTTP status of GET `url`."""
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(url)).status_code


async def test_archiving_removes_the_deployment_through_the_running_service(
    site: Site, redis_client: aioredis.Redis
) -> None:
    """infra-service on the bus deploys a project; once it is archived in the API, the
    service's own reconcile stops its process, frees the port and releases the allocation."""
    project = await site.project("shop")
    allocation = await site.admin.allocate_port("local", project.id)
    publisher = Bus(redis_client, actor=registry.Actor.LANGGRAPH)
    service = asyncio.create_task(
        run_infra_service(
            site.settings,
            Bus(redis_client, actor=registry.Actor.INFRA_SERVICE),
            servers=site.deps.servers,
            api=site.service,
        )
    )
    try:
        message = deploy_message(project, allocation.port)
        await publisher.publish(registry.get("ansible:deploy:queue").name, message)
        result = await publisher.wait_reply(RESULTS, message.request_id, timeout_s=60)
        assert isinstance(result, AnsibleDeployResult)
        assert result.status == "success", result.error
        assert await answers(f"{result.deployed_url}/health") == 200
        pid = project_pid(site)
        assert await site.allocated() == [project.id]  # a live project keeps its port

        await site.archive(project)
        async with asyncio.timeout(60):
            while await site.allocated():  # noqa: ASYNC110 - the state is in the API
                await asyncio.sleep(0.1)
        assert not service.done()
    finally:
        service.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await service

    assert not psutil.pid_exists(pid)
    assert port_free(site.port)
    assert not (site.settings.local_base_dir / "apps" / project.id).exists()
    assert await no_leftovers(site.settings.data_dir) == []


async def test_a_pass_removes_only_archived_projects_that_hold_a_port(site: Site) -> None:
    """An archived project that was never deployed and a live deployed one: a pass runs no
    playbook and changes nothing; archiving the live one makes the next pass remove it."""
    live = await site.project("live")
    deployed = await site.deploy(live)
    assert deployed.status == "success", deployed.error
    never = await site.project("never")
    await site.archive(never)
    source = ApiArchivedDeployments(site.service)
    site.runner.runs.clear()

    idle = await reconcile_archived(source, site.deps)

    assert (idle.removed, idle.skipped, idle.failed) == ([], [], [])
    assert site.runner.runs == []
    assert await answers(f"{deployed.deployed_url}/health") == 200
    assert await site.allocated() == [live.id]

    pid = project_pid(site)
    await site.archive(live)
    first = await reconcile_archived(source, site.deps)
    again = await reconcile_archived(source, site.deps)

    gone = Deployment("local", "127.0.0.1", live.id, site.port)
    assert (first.removed, first.failed) == ([gone], [])
    assert site.runner.runs == ["remove_project"]
    assert not psutil.pid_exists(pid)
    assert port_free(site.port)
    assert await site.allocated() == []
    assert (again.removed, again.skipped, again.failed) == ([], [], [])  # idempotent
    assert site.runner.runs == ["remove_project"]


async def test_a_failed_removal_keeps_the_port_and_is_retried_next_pass(site: Site) -> None:
    """The server's supervisor fails: the pass reports it, the project keeps running and its
    allocation stays; once the supervisor works again, the next pass removes the project."""
    project = await site.project("stubborn")
    deployed = await site.deploy(project)
    assert deployed.status == "success", deployed.error
    pid = project_pid(site)
    await site.archive(project)
    supervisor = site.settings.local_base_dir / "bin" / "supervise.py"
    original = supervisor.read_text()
    supervisor.write_text("import sys\nsys.exit('supervisor broken on this server')\n")
    source = ApiArchivedDeployments(site.service)
    try:
        failed = await reconcile_archived(source, site.deps)
    finally:
        supervisor.write_text(original)

    assert failed.removed == []
    [(deployment, error)] = failed.failed
    assert deployment.project_id == project.id
    assert "removal failed" in error
    assert "supervisor broken on this server" in error
    assert psutil.pid_exists(pid)
    assert await answers(f"{deployed.deployed_url}/health") == 200
    assert await site.allocated() == [project.id]

    retried = await reconcile_archived(source, site.deps)

    assert [d.project_id for d in retried.removed] == [project.id]
    assert retried.failed == []
    assert not psutil.pid_exists(pid)
    assert port_free(site.port)
    assert await site.allocated() == []
    assert await no_leftovers(site.settings.data_dir) == []


async def test_nothing_is_removed_while_a_deploy_task_is_queued(site: Site) -> None:
    """A deploy task of the project still queued in the API: the pass skips the project; once
    the task is cancelled, the next pass removes it."""
    project = await site.project("queued")
    deployed = await site.deploy(project)
    assert deployed.status == "success", deployed.error
    task = await site.admin.create_task(TaskCreate(project_id=project.id, type=TaskType.DEPLOY))
    await site.archive(project)
    source = ApiArchivedDeployments(site.service)
    site.runner.runs.clear()

    waiting = await reconcile_archived(source, site.deps)

    assert [d.project_id for d in waiting.skipped] == [project.id]
    assert site.runner.runs == []
    assert await answers(f"{deployed.deployed_url}/health") == 200

    await site.admin.cancel_task(task.id)
    done = await reconcile_archived(source, site.deps)

    assert [d.project_id for d in done.removed] == [project.id]
    assert port_free(site.port)
    assert await site.allocated() == []


async def test_nothing_is_removed_while_a_deploy_job_of_the_project_runs(
    site: Site, tmp_path: Path
) -> None:
    """A deploy job of the archived project is in its health check here: the pass skips the
    project; after the job ends, the next pass removes what it deployed."""
    project = await site.project("gated")
    gate = tmp_path / "gate"
    make_repo(site.settings, "acme/gated", gated_app(gate))
    deploying = asyncio.create_task(site.deploy(project))
    try:
        pid = await until_listening(site.port)  # the job waits for the project's health
        await site.archive(project)
        source = ApiArchivedDeployments(site.service)
        site.runner.runs.clear()

        waiting = await reconcile_archived(source, site.deps)

        assert [d.project_id for d in waiting.skipped] == [project.id]
        assert site.runner.runs == []
        assert psutil.pid_exists(pid)
        gate.touch()
        deployed = await deploying
    finally:
        gate.touch()
        await asyncio.gather(deploying, return_exceptions=True)
    assert deployed.status == "success", deployed.error

    done = await reconcile_archived(source, site.deps)

    assert [d.project_id for d in done.removed] == [project.id]
    assert not psutil.pid_exists(pid)
    assert port_free(site.port)
    assert await site.allocated() == []


async def test_the_loop_outlives_an_unreachable_api(tmp_path: Path) -> None:
    """With the API down, every pass fails and is logged; the loop keeps going."""
    api = ApiClient(f"http://127.0.0.1:{free_port()}", key="k")
    deps, _ = make_deps(make_settings(tmp_path))
    passes = 0

    class Counted(ApiArchivedDeployments):
        async def archived(self) -> list[Deployment]:
            nonlocal passes
            passes += 1
            return await super().archived()

    loop = asyncio.create_task(run_reconcile_loop(Counted(api), deps, interval_s=0.01))
    try:
        async with asyncio.timeout(30):
            while passes < 3:  # noqa: ASYNC110 - counting the loop's passes
                await asyncio.sleep(0.01)
        assert not loop.done()
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await api.aclose()
