"""Deploys of a tiny project to the local server with the real playbooks."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import psutil
import pytest

from services.infra_service.handlers import handle_ansible_deploy_message, remove_project
from services.infra_service.settings import InfraSettings
from shared.contracts import AnsibleDeployMessage, ProvisionerResult
from shared.redis_server import free_port
from tests.support.infra_service import app_files, make_deps, make_repo, make_settings

pytestmark = pytest.mark.slow


def deploy_message(project_id: str, repo: str, port: int, **extra: str) -> AnsibleDeployMessage:
    """A deploy of `repo` as `project_id` on the local server."""
    fields: dict[str, object] = {
        "project_id": project_id,
        "project_name": project_id,
        "repo_full_name": repo,
        "server_ip": "127.0.0.1",
        "port": port,
        "github_token_ref": "none",
        "secrets_ref": "none",
    }
    fields.update(extra)
    return AnsibleDeployMessage.model_validate(fields)


def get_json(url: str) -> dict[str, object]:
    """GET a JSON object."""
    answer = httpx.get(url, timeout=5)
    assert answer.status_code == 200
    body: dict[str, object] = answer.json()
    return body


def port_open(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_deploy_redeploy_and_remove(
    infra_settings: InfraSettings, provisioned: ProvisionerResult
) -> None:
    """A deploy answers 200; a redeploy replaces it on the same port; removal stops it."""
    assert provisioned.status == "success"
    deps, progress = make_deps(infra_settings)
    make_repo(infra_settings, "acme/shop", app_files("1"))
    port = free_port()

    first = await handle_ansible_deploy_message(deploy_message("shop", "acme/shop", port), deps)

    assert first.status == "success", first.error
    assert first.deployed_url == f"http://127.0.0.1:{port}"
    assert first.exit_code == 0
    body = await asyncio.to_thread(get_json, f"{first.deployed_url}/health")
    assert body["version"] == "1"
    first_pid = int(str(body["pid"]))
    assert progress.events[0].type == "started"
    assert progress.events[-1].type == "completed"
    assert any(e.current_step for e in progress.events if e.type == "progress")

    make_repo(infra_settings, "acme/shop", app_files("2"))
    second = await handle_ansible_deploy_message(deploy_message("shop", "acme/shop", port), deps)

    assert second.status == "success", second.error
    body = await asyncio.to_thread(get_json, f"{second.deployed_url}/health")
    assert body["version"] == "2"
    assert not psutil.pid_exists(first_pid)

    removed = await remove_project("shop", "127.0.0.1", deps)

    assert removed.status == "success", removed.error
    assert removed.stopped is True
    assert not port_open(port)
    assert not psutil.pid_exists(int(str(body["pid"])))
    assert not (infra_settings.local_base_dir / "apps" / "shop").exists()


async def test_missing_repository_fails(infra_settings: InfraSettings) -> None:
    """A deploy of a repository that does not exist ends failed and names the repository."""
    deps, progress = make_deps(infra_settings)

    result = await handle_ansible_deploy_message(
        deploy_message("ghost", "acme/ghost", free_port()), deps
    )

    assert result.status == "failed"
    assert result.error is not None
    assert "acme/ghost" in result.error
    assert "does not exist" in result.error
    assert result.deployed_url is None
    assert progress.events[-1].type == "failed"


async def test_port_in_use_fails(
    infra_settings: InfraSettings, provisioned: ProvisionerResult
) -> None:
    """A deploy onto a port another process listens on ends failed, saying so."""
    deps, _ = make_deps(infra_settings)
    make_repo(infra_settings, "acme/busy", app_files("1"))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]

        result = await handle_ansible_deploy_message(
            deploy_message("busy", "acme/busy", port), deps
        )

    assert result.status == "failed"
    assert result.error is not None
    assert f"port {port} is already in use" in result.error
    assert result.exit_code not in (None, 0)
    assert result.deployed_url is None


async def test_failing_playbook_reports_and_leaves_nothing_running(
    infra_settings: InfraSettings, provisioned: ProvisionerResult
) -> None:
    """A project that never answers its health check fails the playbook once, with its log tail."""
    settings = infra_settings.model_copy(update={"health_timeout_s": 2.0})
    deps, _ = make_deps(settings)
    make_repo(settings, "acme/crash", app_files("1", crash=True))
    port = free_port()

    result = await handle_ansible_deploy_message(deploy_message("crash", "acme/crash", port), deps)

    assert result.status == "failed"
    assert result.error is not None
    assert "did not answer /health" in result.error
    assert "boom: this project refuses to start" in result.error
    assert result.exit_code == 2
    assert result.stdout is not None
    assert "Report a failed release" in result.stdout
    assert not port_open(port)
    daemon_pid = settings.local_base_dir / "apps" / "crash" / "supervisor.pid"
    assert not daemon_pid.exists()


async def test_deploy_to_an_unprovisioned_server_says_so(tmp_path: Path) -> None:
    """A deploy before provisioning fails with the advice to provision the server first."""
    settings = make_settings(tmp_path)
    deps, _ = make_deps(settings)
    make_repo(settings, "acme/early", app_files("1"))

    result = await handle_ansible_deploy_message(
        deploy_message("early", "acme/early", free_port()), deps
    )

    assert result.status == "failed"
    assert "not provisioned" in (result.error or "")
    assert "provision it first" in (result.error or "")
