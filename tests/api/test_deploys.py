"""The deploy history and rollbacks: records written by a service, read by owners only,
rollback targets validated against the history and queued as pinned deploy tasks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli.main import app
from shared.api_client import (
    ApiClient,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ValidationError,
)
from shared.api_client.schemas import DeployOutcome, DeployRecord, ProjectUpdate
from shared.contracts import ProjectCreate, ProjectStatus, TaskCreate, TaskType
from shared.deploys import commit_of_spec
from tests.api.process import ApiProcess
from tests.support.api import ApiHarness

SHA_A = "a" * 40
SHA_B = "b" * 39 + "1"
SHA_C = "b" * 39 + "2"


async def _project(api: ApiHarness, token: str) -> str:
    async with api.client(token) as owner, api.client(api.admin_key) as admin:
        project = await owner.create_project(ProjectCreate(name="shop"))
        for status in (ProjectStatus.SCAFFOLDING, ProjectStatus.SCAFFOLDED):
            await admin.update_project(project.id, ProjectUpdate(status=status))
        return project.id


async def _deployed(api: ApiHarness, project_id: str, sha: str, outcome: DeployOutcome) -> str:
    """A deploy task recorded by the service as it would be by the deploy flow."""
    async with api.client(api.service_key) as service:
        task = await service.create_task(TaskCreate(project_id=project_id, type=TaskType.DEPLOY))
        await service.record_deploy(project_id, task.id, DeployRecord(sha=sha))
        await service.record_deploy(
            project_id, task.id, DeployRecord(sha=sha, outcome=outcome, url="http://x:1/")
        )
        return task.id


async def test_history_lists_deploys_newest_first_and_only_to_the_owner(api: ApiHarness) -> None:
    """The history holds one record per task, newest first; another user gets 404."""
    _, alice = await api.user(1)
    _, bob = await api.user(2)
    project_id = await _project(api, alice)
    first = await _deployed(api, project_id, SHA_A, DeployOutcome.SUCCEEDED)
    second = await _deployed(api, project_id, SHA_B, DeployOutcome.FAILED)
    async with api.client(alice) as a, api.client(bob) as b:
        page = await a.list_deploys(project_id)
        with pytest.raises(NotFoundError):
            await b.list_deploys(project_id)
        with pytest.raises(NotFoundError):
            await b.rollback(project_id)
    assert [(d.task_id, d.sha, d.outcome) for d in page.items] == [
        (second, SHA_B, DeployOutcome.FAILED),
        (first, SHA_A, DeployOutcome.SUCCEEDED),
    ]
    assert page.total == 2
    assert all(d.finished_at is not None for d in page.items)


async def test_only_services_record_and_a_record_names_a_full_sha(api: ApiHarness) -> None:
    """A user cannot write the history; a short sha is a 422 naming `sha`."""
    _, alice = await api.user(1)
    project_id = await _project(api, alice)
    async with api.client(api.service_key) as service, api.client(alice) as a:
        task = await service.create_task(TaskCreate(project_id=project_id, type=TaskType.DEPLOY))
        with pytest.raises(ForbiddenError):
            await a.record_deploy(project_id, task.id, DeployRecord(sha=SHA_A))
        http = api.http(api.service_key)
        async with http:
            answer = await http.put(
                f"/api/projects/{project_id}/deploys/{task.id}", json={"sha": "abc"}
            )
    assert answer.status_code == 422
    assert answer.json()["fields"][0]["field"] == "body.sha"


async def test_rollback_goes_to_the_release_before_the_current_one(api: ApiHarness) -> None:
    """Without a sha, rollback queues a deploy task pinned to the previous successful sha."""
    _, alice = await api.user(1)
    project_id = await _project(api, alice)
    await _deployed(api, project_id, SHA_A, DeployOutcome.SUCCEEDED)
    await _deployed(api, project_id, SHA_C, DeployOutcome.FAILED)
    await _deployed(api, project_id, SHA_B, DeployOutcome.SUCCEEDED)
    async with api.client(alice) as a:
        task = await a.rollback(project_id)
        named = await a.rollback(project_id, SHA_B[:10])
    assert task.type == TaskType.DEPLOY
    assert commit_of_spec(task.spec) == SHA_A
    assert commit_of_spec(named.spec) == SHA_B


async def test_rollback_refuses_unknown_bad_and_ambiguous_shas(api: ApiHarness) -> None:
    """A sha never deployed successfully, a non-hex one and an ambiguous prefix are 422 on
    `sha`; with a single release there is nothing to roll back to (409)."""
    _, alice = await api.user(1)
    project_id = await _project(api, alice)
    async with api.client(alice) as a:
        with pytest.raises(ConflictError) as none:
            await a.rollback(project_id)
        await _deployed(api, project_id, SHA_B, DeployOutcome.SUCCEEDED)
        await _deployed(api, project_id, SHA_C, DeployOutcome.SUCCEEDED)
        await _deployed(api, project_id, SHA_A, DeployOutcome.FAILED)
        problems = {}
        for sha in (SHA_A, "not-a-sha", "bbbb"):
            with pytest.raises(ValidationError) as refused:
                await a.rollback(project_id, sha)
            assert refused.value.fields[0].field in ("sha", "body.sha")
            problems[sha] = refused.value.fields[0].problem
    assert none.value.fields[0].field == "sha"
    assert "never deployed successfully" in problems[SHA_A]
    assert "should match pattern" in problems["not-a-sha"]
    assert "more than one deployed commit" in problems["bbbb"]


async def test_a_deploy_task_spec_naming_a_bad_commit_is_refused(api: ApiHarness) -> None:
    """`commit <sha>` in a deploy task's spec must be a full sha: 422 on `spec`."""
    _, alice = await api.user(1)
    project_id = await _project(api, alice)
    async with api.client(alice) as a:
        with pytest.raises(ValidationError) as refused:
            await a.create_task(
                TaskCreate(project_id=project_id, type=TaskType.DEPLOY, spec="commit 12ab")
            )
        ok = await a.create_task(
            TaskCreate(project_id=project_id, type=TaskType.DEPLOY, spec=f"commit {SHA_A}")
        )
    assert refused.value.fields[0].field == "spec"
    assert ok.spec == f"commit {SHA_A}"


@pytest.mark.slow
def test_cli_lists_deploys_and_rolls_back(tmp_path: Path) -> None:
    """`orchestrator project deploys ID` prints the history; `project rollback ID --to SHA`
    queues a pinned deploy task; a commit never deployed exits 1 naming `sha`."""
    db_env = {"ORCHESTRATOR_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"}
    created = CliRunner().invoke(app, ["admin", "create-admin", "--telegram-id", "7"], env=db_env)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    process = ApiProcess(
        database_url=db_env["ORCHESTRATOR_DATABASE_URL"], redis_url=None, relay_enabled=False
    ).start()
    env = {**db_env, "ORCHESTRATOR_API__URL": process.url, "ORCHESTRATOR_API__KEY": key}

    async def history(project_id: str) -> None:
        async with ApiClient(process.url, key=key) as admin:
            for status in (ProjectStatus.SCAFFOLDING, ProjectStatus.SCAFFOLDED):
                await admin.update_project(project_id, ProjectUpdate(status=status))
            for sha in (SHA_A, SHA_B):
                task = await admin.create_task(
                    TaskCreate(project_id=project_id, type=TaskType.DEPLOY)
                )
                record = DeployRecord(sha=sha, outcome=DeployOutcome.SUCCEEDED, url="http://h/")
                await admin.record_deploy(project_id, task.id, record)

    try:
        made = CliRunner().invoke(app, ["project", "create", "shop", "--json"], env=env)
        project_id = json.loads(made.stdout)["id"]
        asyncio.run(history(project_id))
        listed = CliRunner().invoke(app, ["project", "deploys", project_id, "--json"], env=env)
        table = CliRunner().invoke(app, ["project", "deploys", project_id], env=env)
        rolled = CliRunner().invoke(app, ["project", "rollback", project_id], env=env)
        refused = CliRunner().invoke(
            app, ["project", "rollback", project_id, "--to", "c" * 40], env=env
        )
    finally:
        process.terminate()

    assert listed.exit_code == 0, listed.output
    assert [d["sha"] for d in json.loads(listed.stdout)] == [SHA_B, SHA_A]
    assert SHA_A[:12] in table.stdout
    assert "succeeded" in table.stdout
    assert rolled.exit_code == 0, rolled.output
    assert f"(commit {SHA_A})" in rolled.stdout
    assert "orchestrator task watch" in rolled.stdout
    assert refused.exit_code == 1
    assert "  sha: commit " + "c" * 40 in refused.stderr
    assert "never deployed" in refused.stderr
