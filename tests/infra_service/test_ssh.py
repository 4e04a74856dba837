"""A remote server over real SSH: OpenSSH's client (Ansible's ssh connection) against an
asyncssh server on 127.0.0.1 that accepts one generated key. The server comes from the API's
registry (address, ssh user, `credentials_ref`), its key is held by reference (`file:`), and
the real playbooks provision it, deploy to it and undo a cancelled deploy there."""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import logging
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import httpx
import psutil
import pytest

from services.infra_service.cancellation import CancelledTasks
from services.infra_service.handlers import (
    InfraDeps,
    handle_ansible_deploy_message,
    handle_provisioner_message,
)
from services.infra_service.servers import ApiServerLookup, ServerStatus
from services.infra_service.settings import (
    InfraSettings,
    LocalServerSettings,
    RemoteServerSettings,
)
from shared.contracts import AnsibleDeployMessage, ProvisionerMessage
from shared.redis_server import free_port, port_free
from tests.infra_service.ssh_server import SshServer, running_ssh_server
from tests.support.infra_service import (
    FakeRegistry,
    RecordingProgress,
    app_files,
    client,
    gated_app,
    make_deps,
    make_repo,
    make_settings,
    no_leftovers,
    server,
    stop_all_apps,
    until_listening,
)

pytestmark = pytest.mark.slow

USER = getpass.getuser()


@pytest.fixture
async def ssh_server(tmp_path: Path) -> AsyncIterator[SshServer]:
    """A real SSH server for this test; whatever was deployed through it is stopped after."""
    missing = [tool for tool in ("ssh", "sftp") if shutil.which(tool) is None]
    if missing:  # never skipped: Ansible's ssh connection cannot be tested without them
        pytest.fail(f"OpenSSH's client is needed ({', '.join(missing)}): install openssh-client")
    async with running_ssh_server(tmp_path / "home") as running:
        try:
            yield running
        finally:
            stop_all_apps(tmp_path / "remote")


def remote_settings(tmp_path: Path, ssh: SshServer) -> InfraSettings:
    """No local server; SSH servers of the registry live under `tmp_path/remote`; the SSH
    server's host key is known in advance and checked strictly."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(ssh.known_hosts_line + "\n")
    return make_settings(
        tmp_path / "data",
        local=LocalServerSettings(enabled=False),
        ssh_host_key_checking="yes",
        ssh_known_hosts_file=known_hosts,
        remote_defaults=RemoteServerSettings(
            handle="*",
            host="*",
            port=ssh.port,
            base_dir=tmp_path / "remote",
            python=sys.executable,
            bind_host="127.0.0.1",
            install_packages=False,
        ),
    )


def registry_deps(
    settings: InfraSettings, private_key: str
) -> tuple[InfraDeps, RecordingProgress, FakeRegistry]:
    """Deps whose servers come from the API's registry: `web-1` at 127.0.0.1, its key in the
    file the registry's `credentials_ref` names (mode 0600, under the secrets directory)."""
    key_file = settings.effective_secrets_dir / "web-1.key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(private_key)
    key_file.chmod(0o600)
    registry = FakeRegistry(
        [server("web-1", "127.0.0.1", ssh_user=USER, credentials_ref="file:web-1.key")]
    )
    deps, progress = make_deps(settings)
    deps = dataclasses.replace(deps, servers=ApiServerLookup(client(registry), settings))
    return deps, progress, registry


def key_material(private_key: str) -> list[str]:
    """Distinctive pieces of a private key (its base64 body lines)."""
    lines = [line for line in private_key.splitlines() if line and not line.startswith("-----")]
    return [line for line in lines if len(line) >= 20]


async def scan_for(pieces: list[str], found: list[str], stop: asyncio.Event) -> None:
    """Collect every command line showing one of `pieces` until `stop` is set."""
    while not stop.is_set():
        for process in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(process.info["cmdline"] or [])
            if any(piece in cmdline for piece in pieces):
                found.append(cmdline)
        await asyncio.sleep(0.05)


def deploy_message(name: str, port: int, **extra: str) -> AnsibleDeployMessage:
    """A deploy of `acme/<name>` to the registry's 127.0.0.1 (the SSH server)."""
    return AnsibleDeployMessage.model_validate(
        {
            "project_id": name,
            "project_name": name,
            "repo_full_name": f"acme/{name}",
            "server_ip": "127.0.0.1",
            "port": port,
            "github_token_ref": "none",
            "secrets_ref": "none",
            **extra,
        }
    )


async def test_provision_and_deploy_over_ssh_with_a_key_held_by_reference(
    tmp_path: Path,
    ssh_server: SshServer,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Provisioning and a deploy run over SSH with the registry's key; the project answers;
    the private key never shows in a command line, a log, a progress event or a result."""
    caplog.set_level(logging.DEBUG)
    settings = remote_settings(tmp_path, ssh_server)
    deps, progress, registry = registry_deps(settings, ssh_server.client_private_key)
    make_repo(settings, "acme/remote-shop", app_files("over-ssh"))
    pieces = key_material(ssh_server.client_private_key)
    found: list[str] = []
    stop = asyncio.Event()
    scanner = asyncio.create_task(scan_for(pieces, found, stop))
    try:
        provisioned = await handle_provisioner_message(
            ProvisionerMessage(server_handle="web-1"), deps
        )
        deployed = await handle_ansible_deploy_message(
            deploy_message("remote-shop", free_port()), deps
        )
    finally:
        stop.set()
        await scanner

    assert provisioned.status == "success", provisioned.error
    assert provisioned.server_ip == "127.0.0.1"
    assert [status for _, status in registry.patches] == [
        {"status": ServerStatus.PROVISIONING.value},
        {"status": ServerStatus.READY.value},
    ]
    assert (tmp_path / "remote" / "bin" / "deployctl.py").is_file()
    assert deployed.status == "success", deployed.error
    assert deployed.deployed_url is not None
    answer = await asyncio.to_thread(httpx.get, f"{deployed.deployed_url}/health", timeout=5)
    assert answer.json()["version"] == "over-ssh"
    assert (tmp_path / "remote" / "apps" / "remote-shop" / "service.json").is_file()
    assert ssh_server.logins
    assert set(ssh_server.logins) == {USER}  # every login used the key
    assert ssh_server.commands  # the modules really ran through the SSH server
    assert found == []
    texts = [
        provisioned.model_dump_json(),
        deployed.model_dump_json(),
        *(event.model_dump_json() for event in progress.events),
        *ssh_server.commands,
        caplog.text,
        "".join(capfd.readouterr()),
    ]
    assert not [text for text in texts if any(piece in text for piece in pieces)]
    assert not list((settings.work_dir / "jobs").iterdir())  # inventories and key files gone


async def test_a_key_the_server_does_not_accept_is_refused(
    tmp_path: Path, ssh_server: SshServer
) -> None:
    """With a key the server refuses, provisioning fails as unreachable after its retries."""
    settings = remote_settings(tmp_path, ssh_server)
    other_key = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    deps, _, registry = registry_deps(settings, other_key)

    result = await handle_provisioner_message(ProvisionerMessage(server_handle="web-1"), deps)

    assert result.status == "failed"
    assert "unreachable" in (result.error or "")
    assert "Permission denied" in (result.error or "")
    assert registry.patches[-1] == ("web-1", {"status": ServerStatus.UNREACHABLE.value})
    assert ssh_server.logins == []
    assert ssh_server.commands == []
    assert not any(piece in result.model_dump_json() for piece in key_material(other_key))


async def test_deploy_over_ssh_cancelled_midway_leaves_nothing_on_the_server(
    tmp_path: Path, ssh_server: SshServer
) -> None:
    """The ssh client dies with ansible-playbook, but the step it ran on the server goes on
    (as under sshd); the undo over a new connection kills it and removes the first deploy."""
    settings = remote_settings(tmp_path, ssh_server).model_copy(
        update={"health_timeout_s": 90.0, "cancel_poll_s": 0.1}
    )
    deps, _, _ = registry_deps(settings, ssh_server.client_private_key)
    tasks = CancelledTasks()
    deps = dataclasses.replace(deps, cancellations=tasks)
    provisioned = await handle_provisioner_message(ProvisionerMessage(server_handle="web-1"), deps)
    assert provisioned.status == "success", provisioned.error
    make_repo(settings, "acme/remote-half", gated_app(tmp_path / "never-opened"))
    port = free_port()
    message = deploy_message("remote-half", port, request_id="t-ssh~deploy")

    job = asyncio.create_task(handle_ansible_deploy_message(message, deps))
    app_pid = await until_listening(port)
    tasks.cancel("t-ssh")
    result = await job

    assert result.status == "failed"
    assert "nothing of the project is left on the server" in (result.error or "")
    assert result.deployed_url is None
    assert re.search(r"step_killed\W+true", result.stdout or "")  # it outlived its ssh client
    assert not psutil.pid_exists(app_pid)
    assert port_free(port)
    assert not (tmp_path / "remote" / "apps" / "remote-half").exists()
    assert await no_leftovers(tmp_path) == []
    assert ssh_server.groups == set()  # no command the server ran is still running
    assert os.listdir(settings.work_dir / "jobs") == []
