"""Servers from the REST API's registry (an httpx stand-in of its routes): mapping, fallback,
statuses recorded by provisioning."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from services.infra_service.handlers import handle_provisioner_message
from services.infra_service.servers import ApiServerLookup, ServerStatus
from shared.api_client import ApiClient
from shared.contracts import ProvisionerMessage
from tests.support.infra_service import FakeRegistry, client, make_deps, make_settings, server


async def test_api_servers_map_to_local_and_ssh_targets(tmp_path: Path) -> None:
    """A registered loopback address is the local machine; others are SSH with their key ref."""
    registry = FakeRegistry([server("home", "127.0.0.1"), server("web-1", "203.0.113.7")])
    lookup = ApiServerLookup(client(registry), make_settings(tmp_path))

    home = await lookup.by_address("127.0.0.1")
    web = await lookup.by_handle("web-1")

    assert (home.handle, home.connection) == ("home", "local")
    assert (web.connection, web.host, web.user, web.ssh_key_ref) == (
        "ssh",
        "203.0.113.7",
        "deploy",
        "env:WEB_KEY",
    )
    assert web.url(10001) == "http://203.0.113.7:10001"


async def test_unknown_to_the_api_or_api_down_falls_back_to_settings(tmp_path: Path) -> None:
    """The configured local server answers when the API has no such server or is down."""
    settings = make_settings(tmp_path)
    known_nothing = ApiServerLookup(client(FakeRegistry([])), settings)
    down = ApiServerLookup(ApiClient("http://127.0.0.1:9", key="k", timeout_s=1), settings)

    assert (await known_nothing.by_handle("local")).connection == "local"
    assert (await down.by_address("localhost")).handle == "local"


async def test_failed_provisioning_marks_the_server_in_the_api(tmp_path: Path) -> None:
    """Provisioning records `provisioning`, then `error` when the playbook cannot run."""
    registry = FakeRegistry([server("home", "127.0.0.1")])
    settings = make_settings(tmp_path, ansible_playbook=str(tmp_path / "absent"))
    deps, _ = make_deps(settings)
    deps = dataclasses.replace(deps, servers=ApiServerLookup(client(registry), settings))

    result = await handle_provisioner_message(ProvisionerMessage(server_handle="home"), deps)

    assert result.status == "error"
    assert registry.patches == [
        ("home", {"status": ServerStatus.PROVISIONING.value}),
        ("home", {"status": ServerStatus.ERROR.value}),
    ]
