"""Projects: creation, filters and pages, the status lifecycle (archiving included, by API
and CLI), validation errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli.main import app
from shared.api_client import ConflictError, ValidationError
from shared.api_client.schemas import ProjectUpdate, ServerCreate, ServerStatus
from shared.contracts import ProjectCreate, ProjectStatus, TaskCreate, TaskType
from tests.api.process import ApiProcess
from tests.support.api import ApiHarness


async def test_create_list_filter_paginate(api: ApiHarness) -> None:
    """Projects page newest first and filter by status and owner."""
    alice_id, alice = await api.user(1)
    bob_id, _ = await api.user(2)
    async with api.client(alice) as a, api.client(api.admin_key) as admin:
        for index in range(5):
            await a.create_project(ProjectCreate(name=f"p{index}", description="d"))
        await admin.create_project(ProjectCreate(name="bobs"), owner_id=bob_id)
        page = await a.list_projects(limit=2, offset=1)
        assert (page.total, page.limit, page.offset) == (5, 2, 1)
        assert [p.name for p in page.items] == ["p3", "p2"]
        assert (await admin.list_projects(owner_id=bob_id)).items[0].name == "bobs"
        assert (await admin.list_projects(owner_id=alice_id)).total == 5
        assert (await admin.list_projects(status=ProjectStatus.DRAFT)).total == 6
        assert (await admin.list_projects(status=ProjectStatus.ACTIVE)).total == 0


async def test_lifecycle_allows_the_path_and_refuses_jumps(api: ApiHarness) -> None:
    """draft → … → active works step by step; draft → active and archived → * are refused."""
    _, alice = await api.user(1)
    async with api.client(alice) as a:
        project = await a.create_project(ProjectCreate(name="shop"))
        with pytest.raises(ConflictError) as refused:
            await a.update_project(project.id, ProjectUpdate(status=ProjectStatus.ACTIVE))
        assert refused.value.code == "invalid_transition"
        assert "from 'draft' to 'active'" in refused.value.body.message
        assert refused.value.fields[0].field == "status"
        for status in ("scaffolding", "scaffolded", "developing", "testing", "deploying", "active"):
            updated = await a.update_project(
                project.id, ProjectUpdate(status=ProjectStatus(status))
            )
            assert updated.status == ProjectStatus(status)
        await a.update_project(project.id, ProjectUpdate(status=ProjectStatus.ARCHIVED))
        with pytest.raises(ConflictError, match="none \\(final\\)"):
            await a.update_project(project.id, ProjectUpdate(status=ProjectStatus.DRAFT))


async def test_validation_error_names_the_field(api: ApiHarness) -> None:
    """A missing or wrong field gets 422 with the field's location and the problem."""
    _, alice = await api.user(1)
    async with api.http(alice) as http:
        missing = await http.post("/api/projects", json={"description": "no name"})
        bad_status = await http.get("/api/projects", params={"status": "flying"})
        blank = await http.post("/api/projects", json={"name": "  "})
    assert missing.status_code == 422
    assert missing.json()["fields"] == [{"field": "body.name", "problem": "Field required"}]
    assert bad_status.json()["fields"][0]["field"] == "query.status"
    assert blank.json()["fields"] == [{"field": "body.name", "problem": "must not be blank"}]
    async with api.client(alice) as a:
        with pytest.raises(ValidationError) as error:
            await a.create_project(ProjectCreate(name="x"), owner_id=999)
    assert error.value.fields[0].field == "owner_id"


async def test_every_error_has_the_one_body(api: ApiHarness) -> None:
    """Unknown routes and wrong methods answer with the same error body."""
    async with api.http(api.admin_key) as http:
        unknown = await http.get("/api/nothing")
        method = await http.put("/api/projects")
    assert unknown.json() == {"code": "not_found", "message": "Not Found", "fields": []}
    assert method.status_code == 405
    assert method.json()["code"] == "method_not_allowed"


PATHS_TO: dict[str, list[str]] = {
    "draft": [],
    "scaffolding": ["scaffolding"],
    "scaffolded": ["scaffolding", "scaffolded"],
    "developing": ["scaffolding", "scaffolded", "developing"],
    "testing": ["scaffolding", "scaffolded", "developing", "testing"],
    "deploying": ["scaffolding", "scaffolded", "deploying"],
    "active": ["scaffolding", "scaffolded", "deploying", "active"],
    "failed": ["failed"],
}
"""A way along the lifecycle from draft to each living status."""


async def test_every_living_project_may_be_archived_and_archived_is_final(
    api: ApiHarness,
) -> None:
    """→ archived is allowed from every other status; archiving again is a no-op; leaving
    archived or creating a task for an archived project is refused, saying why."""
    _, alice = await api.user(1)
    async with api.client(alice) as a:
        for status, path in PATHS_TO.items():
            project = await a.create_project(ProjectCreate(name=status))
            for step in path:
                await a.update_project(project.id, ProjectUpdate(status=ProjectStatus(step)))
            archived = await a.update_project(
                project.id, ProjectUpdate(status=ProjectStatus.ARCHIVED)
            )
            assert archived.status == ProjectStatus.ARCHIVED, status
            again = await a.update_project(project.id, ProjectUpdate(status=ProjectStatus.ARCHIVED))
            assert again.status == ProjectStatus.ARCHIVED
        with pytest.raises(ConflictError) as refused:
            await a.update_project(project.id, ProjectUpdate(status=ProjectStatus.ACTIVE))
        assert refused.value.body.message == (
            "project cannot go from 'archived' to 'active'; allowed: none (final)"
        )
        with pytest.raises(ValidationError, match="the project is archived"):
            await a.create_task(TaskCreate(project_id=project.id, type=TaskType.DEPLOY))


async def test_allocations_of_archived_projects_are_listed_by_project_status(
    api: ApiHarness,
) -> None:
    """`project_status=archived` lists only the allocations of archived projects (what
    infra-service removes); without it, every allocation is listed."""
    owner, _ = await api.user(1)
    async with api.client(api.admin_key) as admin, api.client(api.service_key) as service:
        await admin.create_server(
            ServerCreate(handle="web", address="10.0.0.5", status=ServerStatus.READY)
        )
        live = await admin.create_project(ProjectCreate(name="live"), owner_id=owner)
        gone = await admin.create_project(ProjectCreate(name="gone"), owner_id=owner)
        for project in (live, gone):
            await admin.allocate_port("web", project.id)
        await admin.update_project(gone.id, ProjectUpdate(status=ProjectStatus.ARCHIVED))

        archived = await service.list_allocations("web", project_status=ProjectStatus.ARCHIVED)
        every = await service.list_allocations("web")
        active = await service.list_allocations("web", project_status=ProjectStatus.ACTIVE)
        await service.release_port("web", gone.id)
        after = await service.list_allocations("web", project_status=ProjectStatus.ARCHIVED)

    assert [a.project_id for a in archived] == [gone.id]
    assert sorted(a.project_id for a in every) == sorted([live.id, gone.id])
    assert active == []
    assert after == []


@pytest.mark.slow
def test_cli_archives_a_project_and_explains_refusals(tmp_path: Path) -> None:
    """`orchestrator project archive ID` archives (again: says so), and an unknown id exits 1
    with the API's message."""
    db_env = {"ORCHESTRATOR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"}
    created = CliRunner().invoke(app, ["admin", "create-admin", "--telegram-id", "7"], env=db_env)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    process = ApiProcess(
        database_url=db_env["ORCHESTRATOR_DATABASE_URL"], redis_url=None, relay_enabled=False
    ).start()
    env = {**db_env, "ORCHESTRATOR_API__URL": process.url, "ORCHESTRATOR_API__KEY": key}
    try:
        made = CliRunner().invoke(app, ["project", "create", "shop", "--json"], env=env)
        project_id = json.loads(made.stdout)["id"]
        first = CliRunner().invoke(app, ["project", "archive", project_id, "--json"], env=env)
        second = CliRunner().invoke(app, ["project", "archive", project_id], env=env)
        unknown = CliRunner().invoke(app, ["project", "archive", "nope"], env=env)
    finally:
        process.terminate()

    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["status"] == "archived"
    assert second.exit_code == 0, second.output
    assert "already archived" in second.stderr
    assert unknown.exit_code == 1
    assert "404 not_found: project 'nope' not found" in unknown.stderr
