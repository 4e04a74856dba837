"""The cross-tenant repository attack, end to end: user A points A's project at user B's
repository and asks for work on it. Refused by the API; and with the bad value already in the
database, refused by the engineering and deploy flows (local and GitHub providers) before
any worker, clone, push, port or GitHub call touches B's repository."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from services.api.auth.service import AuthService
from shared.api_client import ApiClient, ForbiddenError
from shared.api_client.schemas import (
    ProjectUpdate,
    ServerCreate,
    ServerStatus,
    UserCreate,
)
from shared.contracts import ProjectCreate, ProjectDTO, ProjectStatus, TaskCreate, TaskType
from shared.git import GitHubProvider, LocalGitProvider
from shared.git.naming import repo_full_name
from tests.git.fake_github import FakeGitHub
from tests.langgraph.fakes import scaffold_repo
from tests.support.langgraph import GraphSystem, langgraph


def _refs(bare: Path) -> str:
    """Every ref of a bare repository with its sha (what a push would change)."""
    return subprocess.run(
        ["git", "for-each-ref"], cwd=bare, capture_output=True, text=True, check=True
    ).stdout


async def _user_token(graph_system: GraphSystem, telegram_id: int) -> tuple[int, str]:
    user = await graph_system.admin.create_user(UserCreate(telegram_id=telegram_id))
    async with graph_system.database.sessionmaker() as session:
        _, token = await AuthService(session).create_key("token", "user", user.id)
        await session.commit()
    return user.id, token


async def _scaffolded(
    graph_system: GraphSystem, owner_id: int, name: str, git: LocalGitProvider
) -> ProjectDTO:
    """A project of `owner_id` with its own scaffolded repository, recorded by the system."""
    project = await graph_system.admin.create_project(ProjectCreate(name=name), owner_id=owner_id)
    url = await scaffold_repo(git, repo_full_name("projects", project.id, project.name))
    await graph_system.admin.update_project(
        project.id, ProjectUpdate(status=ProjectStatus.SCAFFOLDING)
    )
    return await graph_system.admin.update_project(
        project.id, ProjectUpdate(status=ProjectStatus.SCAFFOLDED, repository_url=url)
    )


async def _plant(graph_system: GraphSystem, project_id: str, url: str) -> None:
    """Write a repository URL straight into the database (what the API refuses to store)."""
    async with graph_system.database.sessionmaker() as session:
        await session.execute(
            text("UPDATE projects SET repository_url = :url WHERE id = :id"),
            {"url": url, "id": project_id},
        )
        await session.commit()


@pytest.fixture
async def tenants(
    graph_system: GraphSystem,
) -> AsyncIterator[tuple[ApiClient, ProjectDTO, ProjectDTO]]:
    """User A's client, A's scaffolded project, and user B's scaffolded project."""
    a_id, a_token = await _user_token(graph_system, 5001)
    b_id, _ = await _user_token(graph_system, 5002)
    mine = await _scaffolded(graph_system, a_id, "shop", graph_system.git)
    victim = await _scaffolded(graph_system, b_id, "victim", graph_system.git)
    client = graph_system.client(a_token)
    try:
        yield client, mine, victim
    finally:
        await client.aclose()


async def test_the_api_refuses_the_attack(
    graph_system: GraphSystem, tenants: tuple[ApiClient, ProjectDTO, ProjectDTO]
) -> None:
    """A's PATCH pointing A's project at B's repository is 403; A's record is unchanged."""
    a, mine, victim = tenants
    with pytest.raises(ForbiddenError):
        await a.update_project(mine.id, ProjectUpdate(repository_url=victim.repository_url))
    assert (await a.get_project(mine.id)).repository_url == mine.repository_url


async def test_the_flows_refuse_a_planted_foreign_repository(
    graph_system: GraphSystem, tenants: tuple[ApiClient, ProjectDTO, ProjectDTO]
) -> None:
    """With B's repository URL planted in A's record: A's engineering task and deploy task fail
    naming the mismatch; no worker is created, no port allocated, B's refs are untouched."""
    a, mine, victim = tenants
    assert victim.repository_url is not None
    victim_repo = graph_system.git.path_of(repo_full_name("projects", victim.id, victim.name))
    before = _refs(victim_repo)
    await _plant(graph_system, mine.id, victim.repository_url)
    await graph_system.admin.create_server(
        ServerCreate(handle="local", address="127.0.0.1", status=ServerStatus.READY)
    )
    async with langgraph(graph_system):
        engineering = await a.create_task(
            TaskCreate(project_id=mine.id, type=TaskType.ENGINEERING, spec="add /x")
        )
        deploy = await a.create_task(TaskCreate(project_id=mine.id, type=TaskType.DEPLOY))
        ended = [
            await graph_system.wait_final(engineering.id),
            await graph_system.wait_final(deploy.id),
        ]
    for task in ended:
        assert task.status == "failed"
        assert "not its own" in str((task.result or {}).get("error"))
    assert graph_system.workers.commands == []
    assert await graph_system.admin.list_allocations("local") == []
    assert _refs(victim_repo) == before


async def test_the_flow_refuses_it_with_the_github_provider_too(
    graph_system: GraphSystem, tenants: tuple[ApiClient, ProjectDTO, ProjectDTO], tmp_path: Path
) -> None:
    """The same planted value with GitHub as the provider: the task fails and not one request
    for B's repository reaches GitHub."""
    a, mine, victim = tenants
    fake = FakeGitHub(tmp_path / "gh", "ghp_token")
    (tmp_path / "gh").mkdir()
    github = GitHubProvider(SecretStr("ghp_token"), transport=fake.transport(), owner="projects")
    victim_name = repo_full_name("projects", victim.id, victim.name)
    await _plant(graph_system, mine.id, f"https://github.com/{victim_name}.git")
    graph_system.git = github  # type: ignore[assignment]  # langgraph takes any GitPort
    try:
        async with langgraph(graph_system):
            task = await a.create_task(
                TaskCreate(project_id=mine.id, type=TaskType.ENGINEERING, spec="add /x")
            )
            ended = await graph_system.wait_final(task.id)
    finally:
        await github.aclose()
    assert ended.status == "failed"
    assert "not its own" in str((ended.result or {}).get("error"))
    assert [path for _, path in fake.requests if victim_name.split("/")[1] in path] == []
    assert graph_system.workers.commands == []
