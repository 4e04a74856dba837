"""Pinned deploys, safe releases and rollback end to end: the deploy flow (real API, real
Redis, real git remotes) with the real infra-service handler and real Ansible deploying to
this machine, answering over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.infra_service.handlers import (
    handle_ansible_deploy_message,
    handle_provisioner_message,
)
from services.infra_service.settings import InfraSettings
from shared.contracts import (
    AnsibleDeployMessage,
    AnsibleDeployResult,
    ProjectStatus,
    ProvisionerMessage,
    TaskDTO,
    TaskStatus,
    TaskType,
)
from shared.deploys import split_pinned
from shared.git import clone, commit_all, push
from tests.langgraph.test_deploy import _server
from tests.support.infra_service import app_files, make_deps, make_settings, stop_all_apps
from tests.support.langgraph import GraphSystem, langgraph

pytestmark = pytest.mark.slow


@pytest.fixture
async def real_infra(graph_system: GraphSystem, tmp_path: Path) -> AsyncIterator[InfraSettings]:
    """infra-service's deploy handler behind the deploy queue, on a provisioned local server
    whose repositories are the system's git remotes."""
    settings = make_settings(
        tmp_path / "infra", repos_dir=graph_system.git.root, health_timeout_s=4.0
    )
    deps, _ = make_deps(settings)
    provisioned = await handle_provisioner_message(ProvisionerMessage(server_handle="local"), deps)
    assert provisioned.status == "success", provisioned.error

    async def deploy(message: AnsibleDeployMessage) -> AnsibleDeployResult:
        return await handle_ansible_deploy_message(message, deps)

    graph_system.infra.delegate = deploy
    await _server(graph_system)
    try:
        yield settings
    finally:
        stop_all_apps(settings.local_base_dir)


async def _push(
    graph_system: GraphSystem, url: str, work: Path, version: str, *, crash: bool = False
) -> str:
    """Commit a version of the tiny app on main and push it; its sha."""
    if not await asyncio.to_thread(work.exists):
        await clone(url, work)
    for name, content in app_files(version, crash=crash).items():
        (work / name).write_text(content, encoding="utf-8")
    sha = await commit_all(work, f"app {version}")
    assert sha is not None
    await push(work, url, "main")
    return sha


async def _root(url: str) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.get(url)
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


async def _deploy(graph_system: GraphSystem, project_id: str, spec: str = "") -> TaskDTO:
    task_id = await graph_system.task(project_id, spec, TaskType.DEPLOY)
    return await graph_system.wait_final(task_id, timeout_s=120)


async def test_pinned_deploy_safe_release_and_rollback(
    graph_system: GraphSystem, real_infra: InfraSettings, tmp_path: Path
) -> None:
    """The flow deploys the head it resolved at its start (a commit pushed meanwhile is not
    shipped) and `GET /` names it; a release that crashes at start fails the task saying the
    previous release still serves, which answers on the same URL; a rollback to the first
    sha serves it again; the history lists all four, newest first."""
    project = await graph_system.project("Real", scaffolded=True)
    url = project.repository_url or ""
    work = tmp_path / "dev"
    first = await _push(graph_system, url, work, "one")
    pushed_meanwhile: list[str] = []
    real = graph_system.infra.delegate
    assert real is not None

    async def push_then_deploy(message: AnsibleDeployMessage) -> AnsibleDeployResult:
        if not pushed_meanwhile:  # main moves after the flow pinned its commit
            pushed_meanwhile.append(await _push(graph_system, url, work, "two"))
        return await real(message)

    graph_system.infra.delegate = push_then_deploy
    async with langgraph(graph_system):
        one = await _deploy(graph_system, project.id)
        graph_system.infra.delegate = real
        assert one.status == TaskStatus.COMPLETED, one.result
        assert one.result is not None
        deployed_url = one.result["deployed_url"]
        assert one.result["deployed_sha"] == first
        assert split_pinned(graph_system.infra.messages[0].repo_full_name)[1] == first
        body = await _root(deployed_url)
        assert (body["commit"], body["version"]) == (first, "one")
        [second] = pushed_meanwhile

        two = await _deploy(graph_system, project.id)
        assert two.status == TaskStatus.COMPLETED, two.result
        assert (await _root(deployed_url))["commit"] == second

        crash = await _push(graph_system, url, work, "three", crash=True)
        three = await _deploy(graph_system, project.id)
        assert three.status == TaskStatus.FAILED
        assert three.result is not None
        error = three.result["error"]
        assert "boom: this project refuses to start" in error
        assert f"the previous release (commit {second[:12]}) still serves" in error
        assert three.result["previous_serves"] is True
        assert (await _root(deployed_url))["commit"] == second
        assert (await graph_system.admin.get_project(project.id)).status == ProjectStatus.ACTIVE

        rollback = await graph_system.admin.rollback(project.id, first[:8])
        back = await graph_system.wait_final(rollback.id, timeout_s=120)
        assert back.status == TaskStatus.COMPLETED, back.result
        assert back.result is not None
        assert (back.result["deployed_sha"], back.result["kind"]) == (first, "rollback")
        assert back.result["deployed_url"] == deployed_url
        body = await _root(deployed_url)
        assert (body["commit"], body["version"]) == (first, "one")

    history = (await graph_system.admin.list_deploys(project.id)).items
    assert [(d.task_id, d.sha, d.kind, d.outcome) for d in history] == [
        (back.id, first, "rollback", "succeeded"),
        (three.id, crash, "deploy", "failed"),
        (two.id, second, "deploy", "succeeded"),
        (one.id, first, "deploy", "succeeded"),
    ]
    assert (await graph_system.admin.get_project(project.id)).status == ProjectStatus.ACTIVE
