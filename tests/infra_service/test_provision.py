"""Provisioning of servers with the real playbook: the local machine, an unreachable SSH host."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal

import httpx
import pytest

from services.infra_service.handlers import (
    handle_ansible_deploy_message,
    handle_provisioner_message,
)
from services.infra_service.servers import ServerStatus, SettingsServerLookup
from services.infra_service.settings import InfraSettings, RemoteServerSettings
from shared.contracts import AnsibleDeployMessage, ProvisionerMessage, ProvisionerResult
from shared.redis_server import free_port
from tests.support.infra_service import app_files, make_deps, make_repo, read_json

pytestmark = pytest.mark.slow


def test_local_server_is_provisioned(
    infra_settings: InfraSettings, provisioned: ProvisionerResult
) -> None:
    """Provisioning the local server installs the supervisor and the deploy steps."""
    assert provisioned.status == "success", provisioned.error
    assert provisioned.server_handle == "local"
    assert provisioned.server_ip == "127.0.0.1"
    assert provisioned.errors is None
    bin_dir = infra_settings.local_base_dir / "bin"
    assert (bin_dir / "supervise.py").is_file()
    assert (bin_dir / "deployctl.py").is_file()
    assert (infra_settings.local_base_dir / "apps").is_dir()


async def test_recovery_with_reinstall_restarts_a_killed_project(
    infra_settings: InfraSettings, provisioned: ProvisionerResult
) -> None:
    """force_reinstall + is_recovery reinstall the tooling and restart a project that died."""
    deps, _ = make_deps(infra_settings)
    make_repo(infra_settings, "acme/phoenix", app_files("1"))
    port = free_port()
    message = AnsibleDeployMessage(
        project_id="phoenix",
        project_name="phoenix",
        repo_full_name="acme/phoenix",
        server_ip="localhost",
        port=port,
        github_token_ref="none",
        secrets_ref="none",
    )
    deployed = await handle_ansible_deploy_message(message, deps)
    assert deployed.status == "success", deployed.error
    app_dir = infra_settings.local_base_dir / "apps" / "phoenix"
    for pid_file in ("supervisor.pid", "app.pid"):  # a crash of the whole machine, in small
        os.killpg(int((app_dir / pid_file).read_text()), signal.SIGKILL)
    await asyncio.sleep(0.3)

    result = await handle_provisioner_message(
        ProvisionerMessage(server_handle="local", force_reinstall=True, is_recovery=True), deps
    )

    assert result.status == "success", result.error
    assert result.services_redeployed >= 1
    assert isinstance(deps.servers, SettingsServerLookup)
    assert deps.servers.statuses == {"local": ServerStatus.READY}
    answer = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/health", timeout=5)
    for _ in range(40):
        if answer.status_code == 200:
            break
        await asyncio.sleep(0.25)
        answer = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/health", timeout=5)
    assert answer.status_code == 200
    assert read_json(app_dir / "service.json")["port"] == port  # (the session kills it at the end)


async def test_unknown_server_handle_fails_without_running_ansible(
    infra_settings: InfraSettings,
) -> None:
    """A handle no server answers to ends failed at once, naming the handle."""
    deps, progress = make_deps(infra_settings)

    result = await handle_provisioner_message(ProvisionerMessage(server_handle="mars"), deps)

    assert result.status == "failed"
    assert "'mars'" in (result.error or "")
    assert result.errors == [result.error]
    assert [event.type for event in progress.events] == ["started", "failed"]


async def test_unreachable_ssh_server_is_retried_then_fails(
    infra_settings: InfraSettings,
) -> None:
    """An SSH server on a closed port is retried with backoff, then reported unreachable."""
    closed_port = free_port()
    settings = infra_settings.model_copy(
        update={
            "servers": [RemoteServerSettings(handle="far", host="127.0.0.1", port=closed_port)],
            "ssh_backoff_s": 0.5,
        }
    )
    deps, _ = make_deps(settings)
    delays: list[float] = []

    async def no_sleep(delay_s: float) -> None:
        delays.append(delay_s)

    deps = dataclasses.replace(deps, sleep=no_sleep)

    result = await handle_provisioner_message(ProvisionerMessage(server_handle="far"), deps)

    assert result.status == "failed"
    assert "unreachable" in (result.error or "")
    assert delays == [0.5]
    assert isinstance(deps.servers, SettingsServerLookup)
    assert deps.servers.statuses == {"far": ServerStatus.UNREACHABLE}
    assert result.server_ip == "127.0.0.1"
