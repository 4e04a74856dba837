"""Deploys cancelled with their task, on the local server with the real playbooks: the
`ansible-playbook` run is killed and what the job started is undone (real processes)."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest

from services.infra_service.cancellation import CancelledTasks
from services.infra_service.handlers import InfraDeps, handle_ansible_deploy_message
from services.infra_service.settings import InfraSettings
from shared.contracts import AnsibleDeployMessage, ProvisionerResult
from shared.redis_server import free_port, port_free
from tests.support.infra_service import (
    RecordingProgress,
    app_files,
    gated_app,
    leftovers,
    listening_pid,
    make_deps,
    make_repo,
    make_settings,
    no_leftovers,
    until_listening,
)

pytestmark = pytest.mark.slow


def deploy_message(name: str, port: int, task_id: str) -> AnsibleDeployMessage:
    """The deploy step of task `task_id` for project `name` (repository `acme/<name>`)."""
    return AnsibleDeployMessage(
        request_id=f"{task_id}~deploy",
        project_id=name,
        project_name=name,
        repo_full_name=f"acme/{name}",
        server_ip="127.0.0.1",
        port=port,
        github_token_ref="none",
        secrets_ref="none",
    )


def cancellable(settings: InfraSettings) -> tuple[InfraDeps, RecordingProgress, CancelledTasks]:
    """Real deps whose task cancellations the test decides."""
    deps, progress = make_deps(settings.model_copy(update={"cancel_poll_s": 0.1}))
    tasks = CancelledTasks()
    return dataclasses.replace(deps, cancellations=tasks), progress, tasks


def head_of(src: Path) -> str:
    """The commit checked out in a project's source directory."""
    return subprocess.run(
        ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


async def test_first_deploy_cancelled_mid_playbook_leaves_nothing(
    infra_settings: InfraSettings, provisioned: ProvisionerResult, tmp_path: Path
) -> None:
    """Cancelled while its health check waits: no Ansible and no project process remain, the
    port is free, the project's directory (its supervisor entry) is gone, the result says so."""
    assert provisioned.status == "success", provisioned.error
    settings = infra_settings.model_copy(update={"health_timeout_s": 90.0})
    deps, progress, tasks = cancellable(settings)
    make_repo(settings, "acme/halfway", gated_app(tmp_path / "never-opened"))
    port = free_port()
    app_dir = settings.local_base_dir / "apps" / "halfway"

    job = asyncio.create_task(
        handle_ansible_deploy_message(deploy_message("halfway", port, "t-first"), deps)
    )
    app_pid = await until_listening(port)  # the playbook now waits for its health check
    assert leftovers(settings.data_dir)  # ansible-playbook and its deploy step run
    tasks.cancel("t-first")
    result = await job

    assert result.status == "failed"
    assert result.error is not None
    assert result.error == (
        "deploy cancelled: nothing of the project is left on the server (a first deploy)"
    )
    assert result.deployed_url is None
    assert (result.server_ip, result.port) == ("127.0.0.1", port)
    assert await no_leftovers(settings.data_dir) == []
    assert not psutil.pid_exists(app_pid)
    assert port_free(port)
    assert not app_dir.exists()
    steps = [event.current_step for event in progress.events if event.type == "progress"]
    assert "cancelled" in steps
    assert progress.events[-1].type == "failed"
    assert progress.events[-1].message == result.error
    assert not list((settings.work_dir / "jobs").iterdir())


async def test_cancelled_redeploy_brings_the_previous_release_back(
    infra_settings: InfraSettings, provisioned: ProvisionerResult, tmp_path: Path
) -> None:
    """A redeploy cancelled after it replaced the running release: the previous release runs
    again on the same port, from its own commit; the new release's process is gone."""
    settings = infra_settings.model_copy(update={"health_timeout_s": 90.0})
    deps, _, tasks = cancellable(settings)
    bare = make_repo(settings, "acme/steady", app_files("1"))
    port = free_port()
    app_dir = settings.local_base_dir / "apps" / "steady"
    first = await handle_ansible_deploy_message(deploy_message("steady", port, "t-v1"), deps)
    assert first.status == "success", first.error
    v1_commit = head_of(app_dir / "src")
    v1_pid = listening_pid(port)
    make_repo(settings, "acme/steady", gated_app(tmp_path / "never-opened"))
    assert head_of(bare) != v1_commit

    job = asyncio.create_task(
        handle_ansible_deploy_message(deploy_message("steady", port, "t-v2"), deps)
    )
    v2_pid = await until_listening(port, other_than=v1_pid)
    tasks.cancel("t-v2")
    result = await job

    assert result.status == "failed"
    assert "the previous release runs again" in (result.error or "")
    assert result.deployed_url == f"http://127.0.0.1:{port}"
    assert not psutil.pid_exists(v2_pid)
    body = (await asyncio.to_thread(httpx.get, f"{result.deployed_url}/health", timeout=5)).json()
    assert body["version"] == "1"
    assert head_of(app_dir / "src") == v1_commit
    assert not (app_dir / "rollback.json").exists()
    assert not (app_dir / "step.json").exists()
    assert [line for line in leftovers(settings.data_dir) if "ansible" in line] == []


async def test_deploy_of_a_task_cancelled_before_it_started_runs_nothing(
    infra_settings: InfraSettings, provisioned: ProvisionerResult
) -> None:
    """A job whose task is already cancelled never runs its playbook; nothing is deployed."""
    deps, _, tasks = cancellable(infra_settings)
    make_repo(infra_settings, "acme/never", app_files("1"))
    tasks.cancel("t-early")
    port = free_port()

    result = await handle_ansible_deploy_message(deploy_message("never", port, "t-early"), deps)

    assert result.status == "failed"
    assert "the job had changed nothing on the server" in (result.error or "")
    assert result.deployed_url is None
    assert "Fetch the repository" not in (result.stdout or "")
    assert not (infra_settings.local_base_dir / "apps" / "never").exists()
    assert port_free(port)


async def test_cancellation_after_the_job_finished_changes_nothing(
    infra_settings: InfraSettings, provisioned: ProvisionerResult
) -> None:
    """A task cancelled once its deploy finished: the project keeps running, nothing is undone."""
    deps, _, tasks = cancellable(infra_settings)
    make_repo(infra_settings, "acme/done", app_files("1"))
    port = free_port()

    result = await handle_ansible_deploy_message(deploy_message("done", port, "t-done"), deps)
    tasks.cancel("t-done")
    await asyncio.sleep(0.5)  # several polls' worth: nothing may be watching any more

    assert result.status == "success", result.error
    body = (await asyncio.to_thread(httpx.get, f"{result.deployed_url}/health", timeout=5)).json()
    assert body["version"] == "1"
    assert (infra_settings.local_base_dir / "apps" / "done" / "service.json").exists()


async def test_a_cancelled_job_whose_undo_fails_keeps_its_port_claimed(tmp_path: Path) -> None:
    """When the undo cannot run (here: a server never provisioned), the result says so and
    still names the project's URL: nothing proves the port is free."""
    settings = make_settings(tmp_path)
    deps, _, tasks = cancellable(settings)
    make_repo(settings, "acme/stray", app_files("1"))
    tasks.cancel("t-stray")

    result = await handle_ansible_deploy_message(
        deploy_message("stray", free_port(), "t-stray"), deps
    )

    assert result.status == "failed"
    assert (result.error or "").startswith("deploy cancelled, but undoing it failed: ")
    assert result.deployed_url is not None
