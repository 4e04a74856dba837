"""The deploy flow: real API allocation, fake infra-service on the real queue, real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket

import httpx

from shared.api_client.schemas import ServerCreate, ServerStatus, ServerUpdate
from shared.contracts import DeployResult, ProjectStatus, TaskCreate, TaskStatus, TaskType
from shared.git.naming import repo_full_name
from tests.langgraph.fakes import unused_port
from tests.support.langgraph import GraphSystem, langgraph


def _free_block() -> int:
    """The start of 100 ports below the kernel's ephemeral range whose first port is bindable.

    Ports at or above 32768 can be taken at any moment by outgoing connections, so a range
    there makes the fake infra-service's bind fail at random.
    """
    while True:
        start = random.randrange(10_000, 32_000, 100)
        with contextlib.suppress(OSError), socket.socket() as probe:
            probe.bind(("127.0.0.1", start))
            return start


async def _server(graph_system: GraphSystem) -> None:
    start = _free_block()
    await graph_system.admin.create_server(
        ServerCreate(
            handle="local",
            address="127.0.0.1",
            status=ServerStatus.READY,
            port_range_start=start,
            port_range_end=start + 99,
        )
    )


async def test_deploy_completes_and_its_url_answers(graph_system: GraphSystem) -> None:
    """A deploy task ends completed with a URL that answers 200, its server and port; it
    deployed the base branch's head (pinned in the request), recorded in the history, and
    the project is active."""
    await _server(graph_system)
    project = await graph_system.project("Site", scaffolded=True)
    async with langgraph(graph_system):
        task = await graph_system.wait_final(
            await graph_system.task(project.id, "", TaskType.DEPLOY)
        )
    assert task.status == TaskStatus.COMPLETED, task.result
    result = DeployResult.model_validate(task.result)
    assert result.status == "success"
    assert result.server_ip == "127.0.0.1"
    assert result.deployed_url == f"http://127.0.0.1:{result.port}/"
    async with httpx.AsyncClient() as client:
        assert (await client.get(result.deployed_url)).status_code == 200
    [message] = graph_system.infra.messages
    assert message.github_token_ref == "env:GITHUB_TOKEN"
    assert message.secrets_ref == f"project:{project.id}"
    full_name = repo_full_name("projects", project.id, project.name)
    head = await graph_system.git.head_of(full_name, "main")
    assert message.repo_full_name == f"{full_name}@{head}"
    assert (task.result or {})["deployed_sha"] == head
    [deploy] = (await graph_system.admin.list_deploys(project.id)).items
    assert (deploy.task_id, deploy.sha, deploy.outcome) == (task.id, head, "succeeded")
    assert deploy.url == result.deployed_url
    assert (await graph_system.admin.get_project(project.id)).status == ProjectStatus.ACTIVE


async def test_the_deploy_request_carries_the_task_s_correlation_id(
    graph_system: GraphSystem,
) -> None:
    """A deploy task created with a chat turn's correlation id: the flow's request to
    infra-service (the Ansible job) travels with that id."""
    await _server(graph_system)
    project = await graph_system.project("Traced", scaffolded=True)
    created = await graph_system.admin.create_task(
        TaskCreate(project_id=project.id, type=TaskType.DEPLOY), correlation_id="tg-77-1234"
    )
    async with langgraph(graph_system):
        task = await graph_system.wait_final(created.id)
    assert task.status == TaskStatus.COMPLETED, task.result
    assert created.correlation_id == "tg-77-1234"
    assert graph_system.infra.correlation_ids == ["tg-77-1234"]


async def test_a_bot_only_release_has_no_url_and_no_http_health_check(
    graph_system: GraphSystem,
) -> None:
    """A project whose modules are `telegram` alone: infra-service answers success without a
    URL (it checked the bot's process); the flow skips the HTTP health check, completes, and
    records a release without a URL; the project is active. The same answer for a project
    with a web module still gets its URL checked (and fails: nothing listens)."""
    await _server(graph_system)
    bot = await graph_system.project("Bot", scaffolded=True, modules=["telegram"])
    web = await graph_system.project("Web", scaffolded=True)
    graph_system.infra.no_web = True
    graph_system.settings.timeouts.health_check_s = 1.0
    async with langgraph(graph_system):
        task = await graph_system.wait_final(await graph_system.task(bot.id, "", TaskType.DEPLOY))
        other = await graph_system.wait_final(await graph_system.task(web.id, "", TaskType.DEPLOY))
    assert task.status == TaskStatus.COMPLETED, task.result
    assert DeployResult.model_validate(task.result).deployed_url is None
    [deploy] = (await graph_system.admin.list_deploys(bot.id)).items
    assert (deploy.outcome, deploy.url) == ("succeeded", None)
    assert (await graph_system.admin.get_project(bot.id)).status == ProjectStatus.ACTIVE
    assert other.status == TaskStatus.FAILED
    assert other.result is not None
    assert other.result["error"].startswith("health_check: http://127.0.0.1:")


async def test_second_deploy_reuses_the_allocation(graph_system: GraphSystem) -> None:
    """Deploying a project again lands on the same server and port (no port leak)."""
    await _server(graph_system)
    project = await graph_system.project("Again", scaffolded=True)
    async with langgraph(graph_system):
        first = await graph_system.wait_final(
            await graph_system.task(project.id, "", TaskType.DEPLOY)
        )
        second = await graph_system.wait_final(
            await graph_system.task(project.id, "", TaskType.DEPLOY)
        )
    assert first.status == second.status == TaskStatus.COMPLETED
    assert first.result is not None
    assert second.result is not None
    assert first.result["port"] == second.result["port"]
    assert len(await graph_system.admin.list_allocations("local")) == 1


async def test_failed_playbook_fails_the_deploy(graph_system: GraphSystem) -> None:
    """infra-service's failure (with its exit code) is the task's error."""
    await _server(graph_system)
    project = await graph_system.project("Bad", scaffolded=True)
    graph_system.infra.fail = True
    async with langgraph(graph_system):
        task = await graph_system.wait_final(
            await graph_system.task(project.id, "", TaskType.DEPLOY)
        )
    assert task.status == TaskStatus.FAILED
    assert task.result is not None
    assert task.result["error"] == "deploy: playbook failed (exit code 2)"
    assert task.result["previous_serves"] is False
    assert (await graph_system.admin.get_project(project.id)).status == ProjectStatus.FAILED
    [deploy] = (await graph_system.admin.list_deploys(project.id)).items
    assert (deploy.outcome, deploy.error) == ("failed", task.result["error"])


async def test_url_that_never_answers_fails_the_health_check(graph_system: GraphSystem) -> None:
    """A deployed URL with nothing listening fails the task at the health check."""
    await _server(graph_system)
    project = await graph_system.project("Silent", scaffolded=True)
    graph_system.infra.url_port = unused_port()
    graph_system.settings.timeouts.health_check_s = 1.0
    async with langgraph(graph_system):
        task = await graph_system.wait_final(
            await graph_system.task(project.id, "", TaskType.DEPLOY)
        )
    assert task.status == TaskStatus.FAILED
    assert task.result is not None
    assert task.result["error"].startswith("health_check: http://127.0.0.1:")


async def test_deploy_waits_for_a_server_still_being_set_up(graph_system: GraphSystem) -> None:
    """A deploy asked for while the only server is being provisioned waits for it, then runs."""
    start = _free_block()
    await graph_system.admin.create_server(
        ServerCreate(
            handle="local",
            address="127.0.0.1",
            status=ServerStatus.PROVISIONING,
            port_range_start=start,
            port_range_end=start + 99,
        )
    )
    project = await graph_system.project("Patient", scaffolded=True)
    async with langgraph(graph_system):
        task_id = await graph_system.task(project.id, "", TaskType.DEPLOY)
        await asyncio.sleep(1.5)  # the flow is waiting at allocate meanwhile
        assert graph_system.infra.messages == []
        await graph_system.admin.update_server("local", ServerUpdate(status=ServerStatus.READY))
        task = await graph_system.wait_final(task_id)
    assert task.status == TaskStatus.COMPLETED, task.result
    assert len(graph_system.infra.messages) == 1


async def test_a_server_that_never_becomes_ready_fails_the_deploy_naming_it(
    graph_system: GraphSystem,
) -> None:
    """Past `server_ready_s` the deploy fails, naming the server still being set up."""
    await graph_system.admin.create_server(
        ServerCreate(handle="slow", address="127.0.0.1", status=ServerStatus.PENDING_SETUP)
    )
    graph_system.settings.timeouts.server_ready_s = 1.0
    project = await graph_system.project("Waiting", scaffolded=True)
    async with langgraph(graph_system):
        task = await graph_system.wait_final(
            await graph_system.task(project.id, "", TaskType.DEPLOY)
        )
    assert task.status == TaskStatus.FAILED
    assert task.result is not None
    assert task.result["error"] == (
        "allocate: no server became ready within 1s (still being set up: slow)"
    )
    assert graph_system.infra.messages == []


async def test_deploy_without_a_ready_server_fails(graph_system: GraphSystem) -> None:
    """No ready server: the task fails at allocation with a clear error."""
    project = await graph_system.project("Nowhere", scaffolded=True)
    async with langgraph(graph_system):
        task = await graph_system.wait_final(
            await graph_system.task(project.id, "", TaskType.DEPLOY)
        )
    assert task.status == TaskStatus.FAILED
    assert task.result is not None
    assert task.result["error"] == "allocate: no server is ready to host the project"
    assert graph_system.infra.messages == []


async def test_deploy_of_an_unscaffolded_project_fails(graph_system: GraphSystem) -> None:
    """A project with no repository yet cannot be deployed."""
    await _server(graph_system)
    project = await graph_system.project("Draft")
    async with langgraph(graph_system):
        task = await graph_system.wait_final(
            await graph_system.task(project.id, "", TaskType.DEPLOY)
        )
    assert task.status == TaskStatus.FAILED
    assert task.result is not None
    assert task.result["error"] == "allocate: project Draft is not scaffolded yet"


async def test_a_failed_release_whose_predecessor_serves_keeps_the_project_active(
    graph_system: GraphSystem,
) -> None:
    """When infra-service says the previous release still serves, the task fails saying so,
    the history has both deploys (newest first) and the project stays active."""
    await _server(graph_system)
    project = await graph_system.project("Kept", scaffolded=True)
    async with langgraph(graph_system):
        first = await graph_system.wait_final(
            await graph_system.task(project.id, "", TaskType.DEPLOY)
        )
        graph_system.infra.fail = graph_system.infra.previous_serves = True
        second = await graph_system.wait_final(
            await graph_system.task(project.id, "", TaskType.DEPLOY)
        )
    assert first.status == TaskStatus.COMPLETED
    assert second.status == TaskStatus.FAILED
    assert second.result is not None
    assert second.result["previous_serves"] is True
    assert second.result["deployed_sha"] is None
    assert second.result["requested_sha"] == first.result["deployed_sha"]  # type: ignore[index]
    history = (await graph_system.admin.list_deploys(project.id)).items
    assert [(d.task_id, d.outcome, d.previous_serves) for d in history] == [
        (second.id, "failed", True),
        (first.id, "succeeded", None),
    ]
    assert (await graph_system.admin.get_project(project.id)).status == ProjectStatus.ACTIVE


async def test_a_deploy_pinned_to_a_commit_not_in_the_repository_fails(
    graph_system: GraphSystem,
) -> None:
    """A deploy task naming a commit the repository lacks fails before anything is deployed."""
    await _server(graph_system)
    project = await graph_system.project("Ghost", scaffolded=True)
    ghost = "0123456789abcdef0123456789abcdef01234567"
    async with langgraph(graph_system):
        task = await graph_system.wait_final(
            await graph_system.task(project.id, f"commit {ghost}", TaskType.DEPLOY)
        )
    assert task.status == TaskStatus.FAILED
    assert task.result is not None
    assert task.result["error"] == (
        f"allocate: commit {ghost} is not in {repo_full_name('projects', project.id, project.name)}"
    )
    assert graph_system.infra.messages == []
    assert (await graph_system.admin.list_deploys(project.id)).total == 0
    assert (await graph_system.admin.get_project(project.id)).status == ProjectStatus.SCAFFOLDED
