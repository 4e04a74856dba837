"""Cancelling a deploy task end to end: the real API (cancel route, allocations), langgraph,
and the real infra-service running the real playbooks on this machine (real processes)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
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
from services.infra_service.handlers import handle_provisioner_message
from services.infra_service.main import run_infra_service
from services.infra_service.settings import InfraSettings
from services.langgraph.settings import StepTimeouts
from shared.api_client import ApiClient, ConflictError
from shared.api_client.schemas import UserCreate
from shared.contracts import (
    DeployResult,
    ProgressEvent,
    ProjectStatus,
    ProvisionerMessage,
    TaskStatus,
    TaskType,
)
from shared.git import LocalGitProvider
from shared.messaging import Bus
from shared.redis_server import port_free
from shared.registry import Actor
from tests.langgraph.fakes import FakeInfra, FakeScaffolder, FakeWorkerManager
from tests.langgraph.test_deploy import _server
from tests.support.infra_service import (
    app_files,
    gated_app,
    leftovers,
    make_deps,
    make_settings,
    no_leftovers,
    stop_all_apps,
    until_listening,
)
from tests.support.langgraph import GraphSystem, fast_settings, langgraph

# Real playbooks on this machine: a loaded 2-core run took one of these past the default 120 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
_STOP_TIMEOUT_S = 60.0


@dataclass
class RealDeploys:
    """The langgraph test system with the real infra-service instead of the fake one."""

    system: GraphSystem
    infra: InfraSettings
    infra_service: asyncio.Task[None]


@pytest.fixture
async def real(redis_client: aioredis.Redis, tmp_path: Path) -> AsyncIterator[RealDeploys]:
    """API + outbox relay + infra-service (on the API, watching tasks) over a provisioned
    local server; langgraph is started by each test. Deployed projects are stopped after."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'api.db'}")
    await upgrade(database)
    async with database.sessionmaker() as session:
        auth = AuthService(session)
        _, admin_key = await auth.create_key("admin", "admin", None)
        _, service_key = await auth.create_key("services", "service", None)
        await session.commit()
    wake = asyncio.Event()
    app = create_app(database, relay_wake=wake)
    admin = ApiClient("http://api.test", key=admin_key, transport=httpx.ASGITransport(app=app))
    user = await admin.create_user(UserCreate(telegram_id=4343))
    git = LocalGitProvider(tmp_path / "repos")
    infra = make_settings(
        tmp_path / "infra", repos_dir=tmp_path / "repos", health_timeout_s=90.0, cancel_poll_s=0.2
    )
    deps, _ = make_deps(infra)
    provisioned = await handle_provisioner_message(ProvisionerMessage(server_handle="local"), deps)
    assert provisioned.status == "success", provisioned.error
    graph_system = GraphSystem(
        redis_client, database, admin, service_key, app, git, fast_settings(tmp_path / "data"),
        user.id, FakeScaffolder(git, admin),
        FakeWorkerManager(Bus(redis_client, actor=Actor.WORKER_MANAGER), tmp_path / "work"),
        FakeInfra(),  # unused: the real infra-service consumes the deploy queue
    )  # fmt: skip
    relay = OutboxRelay(database, Bus(redis_client, actor=Actor.API), wake=wake, poll_s=0.5)
    infra_api = graph_system.client(service_key)
    infra_service = asyncio.create_task(
        run_infra_service(infra, Bus(redis_client, actor=Actor.INFRA_SERVICE), api=infra_api)
    )
    tasks = [asyncio.create_task(relay.run()), infra_service]
    try:
        yield RealDeploys(graph_system, infra, infra_service)
    finally:
        for task in tasks:
            task.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=_STOP_TIMEOUT_S)
        for task in stuck:  # said, with where it waits, rather than hanging the run
            print(f"still running {_STOP_TIMEOUT_S:g} s after its cancel: {task!r}")
            task.print_stack(file=sys.stdout)
        stop_all_apps(infra.local_base_dir)
        await infra_api.aclose()
        await admin.aclose()
        await database.close()


def push_files(bare: str, files: dict[str, str], work: Path) -> None:
    """Commit `files` onto `main` of the bare repository `bare`."""
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run(["git", "clone", "-q", bare, str(work)], check=True, capture_output=True)
    for name, content in files.items():
        (work / name).write_text(content)
    subprocess.run([*git, "-C", str(work), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-q", "-m", "app"], check=True)
    subprocess.run([*git, "-C", str(work), "push", "-q", "origin", "HEAD:main"], check=True)


async def allocated_port(graph_system: GraphSystem, *, timeout_s: float = 30.0) -> int:
    """The port of the (only) allocation on `local`, once the flow made it."""
    async with asyncio.timeout(timeout_s):
        while not (allocations := await graph_system.admin.list_allocations("local")):  # noqa: ASYNC110 - the state is in the API
            await asyncio.sleep(0.05)
    return allocations[0].port


async def progress_of(
    graph_system: GraphSystem, task_id: str, *, timeout_s: float = 10.0
) -> list[ProgressEvent]:
    """Every progress event of a task, up to its terminal one (waiting for it)."""
    bus = Bus(graph_system.redis, actor=Actor.LANGGRAPH)
    async with asyncio.timeout(timeout_s):
        return [event async for event in bus.follow_progress(task_id, block_ms=100)]


async def test_deploy_cancelled_while_its_playbook_runs_leaves_nothing(
    real: RealDeploys, tmp_path: Path
) -> None:
    """Cancelled mid-playbook: the task ends cancelled, no Ansible or project process is
    left, the port is free and its allocation released; the history says cancelled and the
    project is back to scaffolded (nothing of it serves)."""
    graph_system = real.system
    await _server(graph_system)
    project = await graph_system.project("Halfway", scaffolded=True)
    assert project.repository_url is not None
    push_files(project.repository_url, gated_app(tmp_path / "never-opened"), tmp_path / "w")
    async with langgraph(graph_system):
        task_id = await graph_system.task(project.id, "", TaskType.DEPLOY)
        port = await allocated_port(graph_system)
        await until_listening(port)  # the project runs; the playbook waits for its health
        assert leftovers(real.infra.data_dir)
        await graph_system.admin.cancel_task(task_id)
        await graph_system.wait_idle(timeout_s=60)

    task = await graph_system.admin.get_task(task_id)
    assert task.status == TaskStatus.CANCELLED
    result = DeployResult.model_validate(task.result)
    assert (result.status, result.error) == ("failed", "task cancelled")
    assert await graph_system.admin.list_allocations("local") == []
    assert port_free(port)
    assert await no_leftovers(real.infra.data_dir) == []
    assert not list((real.infra.local_base_dir / "apps").iterdir())
    events = await progress_of(graph_system, task_id)
    infra_said = [e.message or "" for e in events if (e.message or "").startswith("deploy cancel")]
    assert infra_said  # infra-service's own account of the undo reached the task
    assert "nothing of the project is left on the server" in infra_said[-1]
    steps = [event.current_step for event in events]
    assert steps.index("deploy_stop") < steps.index("release_port")
    assert (events[-1].type, events[-1].error) == ("failed", "task cancelled")
    [deploy] = (await graph_system.admin.list_deploys(project.id)).items
    assert (deploy.task_id, deploy.outcome) == (task_id, "cancelled")
    assert (await graph_system.admin.get_project(project.id)).status == ProjectStatus.SCAFFOLDED


async def test_a_cancelled_deploy_leaves_the_port_to_the_next_deploy_of_the_project(
    real: RealDeploys, tmp_path: Path
) -> None:
    """Another deploy of the project is queued when the first is cancelled: the undo removes
    the first one's project, but the allocation stays for the second, which completes on it."""
    graph_system = real.system
    await _server(graph_system)
    project = await graph_system.project("Twice", scaffolded=True)
    assert project.repository_url is not None
    gate = tmp_path / "gate"
    push_files(project.repository_url, gated_app(gate), tmp_path / "w")
    async with langgraph(graph_system):
        first = await graph_system.task(project.id, "", TaskType.DEPLOY)
        port = await allocated_port(graph_system)
        await until_listening(port)
        second = await graph_system.task(project.id, "", TaskType.DEPLOY)
        await graph_system.admin.cancel_task(first)
        first_events = await progress_of(graph_system, first, timeout_s=60)
        gate.touch()  # the second deploy's health check may pass now
        done = await graph_system.wait_final(second, timeout_s=90)

    assert (await graph_system.admin.get_task(first)).status == TaskStatus.CANCELLED
    said = " ".join(event.message or "" for event in first_events)
    assert "nothing of the project is left on the server" in said  # nothing ran on the port...
    assert "release_port" not in [event.current_step for event in first_events]  # ...yet kept
    assert done.status == TaskStatus.COMPLETED, done.result
    assert DeployResult.model_validate(done.result).port == port
    assert [a.port for a in await graph_system.admin.list_allocations("local")] == [port]


async def test_without_word_from_infra_service_the_port_stays_allocated(
    real: RealDeploys, tmp_path: Path
) -> None:
    """infra-service dies mid-deploy, then the task is cancelled: after `deploy_stop_s` the
    task ends cancelled and the allocation is kept (something may still listen on it)."""
    graph_system = real.system
    await _server(graph_system)
    project = await graph_system.project("Orphan", scaffolded=True)
    assert project.repository_url is not None
    push_files(project.repository_url, gated_app(tmp_path / "never-opened"), tmp_path / "w")
    timeouts = StepTimeouts(health_check_s=3.0, deploy_stop_s=1.0)
    async with langgraph(graph_system, timeouts=timeouts):
        task_id = await graph_system.task(project.id, "", TaskType.DEPLOY)
        port = await allocated_port(graph_system)
        await until_listening(port)
        real.infra_service.cancel()
        await asyncio.gather(real.infra_service, return_exceptions=True)
        await graph_system.admin.cancel_task(task_id)
        await graph_system.wait_idle(timeout_s=30)

    assert (await graph_system.admin.get_task(task_id)).status == TaskStatus.CANCELLED
    assert [a.port for a in await graph_system.admin.list_allocations("local")] == [port]
    assert not port_free(port)  # indeed: the project the dead job started still listens
    steps = [event.current_step for event in await progress_of(graph_system, task_id)]
    assert "deploy_stop" in steps
    assert "release_port" not in steps


async def test_cancelling_a_completed_deploy_changes_nothing(
    real: RealDeploys, tmp_path: Path
) -> None:
    """A deploy that completed cannot be cancelled: its project answers, its port stays."""
    graph_system = real.system
    await _server(graph_system)
    project = await graph_system.project("Done", scaffolded=True)
    assert project.repository_url is not None
    push_files(project.repository_url, app_files("done"), tmp_path / "w")
    async with langgraph(graph_system):
        task = await graph_system.wait_final(
            await graph_system.task(project.id, "", TaskType.DEPLOY), timeout_s=60
        )
        assert task.status == TaskStatus.COMPLETED, task.result
        with pytest.raises(ConflictError):
            await graph_system.admin.cancel_task(task.id)
        await asyncio.sleep(1.0)  # a few cancel polls of langgraph and infra-service

    result = DeployResult.model_validate(task.result)
    assert result.deployed_url is not None
    async with httpx.AsyncClient() as client:
        answer = await client.get(result.deployed_url)
    assert answer.json()["version"] == "done"
    assert [a.port for a in await graph_system.admin.list_allocations("local")] == [result.port]
    assert (await graph_system.admin.get_task(task.id)).status == TaskStatus.COMPLETED
