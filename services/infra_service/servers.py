"""Deploy targets: which server a handle or an address names, and how Ansible reaches it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import structlog

from services.infra_service.errors import ServerNotFoundError
from services.infra_service.settings import InfraSettings
from shared.api_client import ApiClient
from shared.api_client.errors import ApiClientError, NotFoundError
from shared.api_client.schemas import ServerDTO, ServerStatus, ServerUpdate

__all__ = [
    "ApiServerLookup",
    "ServerLookup",
    "ServerStatus",
    "ServerTarget",
    "SettingsServerLookup",
    "local_target",
]

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ServerTarget:
    """One server as Ansible sees it. `ssh_key_ref` is a reference, resolved per job."""

    handle: str
    host: str
    connection: Literal["local", "ssh"]
    base_dir: Path
    python: str
    bind_host: str
    public_host: str
    port: int = 22
    user: str = "root"
    ssh_key_ref: str | None = None
    runtime_site_packages: str = ""
    install_packages: bool = False
    service_user: str = ""

    def url(self, port: int) -> str:
        """The URL of a project listening on `port` of this server."""
        return f"http://{self.public_host}:{port}"


class ServerLookup(Protocol):
    """Maps a `server_handle` or a `server_ip` of a message to a target, and records the
    lifecycle status of a server as provisioning moves it along."""

    async def by_handle(self, handle: str) -> ServerTarget:
        """The server of a handle; `ServerNotFoundError` when unknown."""
        ...

    async def by_address(self, address: str) -> ServerTarget:
        """The server of an IP address or host name; `ServerNotFoundError` when unknown."""
        ...

    async def set_status(self, handle: str, status: ServerStatus) -> None:
        """Record a server's status (best effort: never raises for a registry outage)."""
        ...


def local_target(settings: InfraSettings, handle: str | None = None) -> ServerTarget:
    """The local machine as a target (under `handle`, default the configured one)."""
    local = settings.local
    return ServerTarget(
        handle=handle or local.handle,
        host="127.0.0.1",
        connection="local",
        base_dir=settings.local_base_dir,
        python=local.python,
        bind_host=local.bind_host,
        public_host=local.public_host,
        runtime_site_packages=local.runtime_packages(),
    )


class SettingsServerLookup:
    """The servers of the settings: the local machine, then the configured SSH servers.
    Statuses are only kept in memory (`statuses`)."""

    def __init__(self, settings: InfraSettings) -> None:
        self._targets: list[tuple[ServerTarget, tuple[str, ...]]] = []
        self.statuses: dict[str, ServerStatus] = {}
        local = settings.local
        if local.enabled:
            self._targets.append((local_target(settings), tuple(local.addresses)))
        for server in settings.servers:
            target = ServerTarget(
                handle=server.handle,
                host=server.host,
                connection="ssh",
                base_dir=server.base_dir,
                python=server.python,
                bind_host=server.bind_host,
                public_host=server.public_host or server.host,
                port=server.port,
                user=server.user,
                ssh_key_ref=server.ssh_key_ref,
                install_packages=server.install_packages,
                service_user=server.service_user,
            )
            self._targets.append((target, (server.host,)))

    async def by_handle(self, handle: str) -> ServerTarget:
        """The configured server of `handle`."""
        for target, _ in self._targets:
            if target.handle == handle:
                return target
        raise ServerNotFoundError(f"no server with handle {handle!r} is configured")

    async def by_address(self, address: str) -> ServerTarget:
        """The configured server answering to `address`."""
        for target, addresses in self._targets:
            if address in addresses:
                return target
        raise ServerNotFoundError(f"no server with address {address!r} is configured")

    async def set_status(self, handle: str, status: ServerStatus) -> None:
        """Remember the status."""
        self.statuses[handle] = status


class ApiServerLookup:
    """The servers registered in the REST API (handle, address, ssh user, credentials_ref),
    with the settings' servers as the fallback for what the API does not know or when it is
    down. An API server whose address is the local machine's is the local target."""

    def __init__(self, api: ApiClient, settings: InfraSettings) -> None:
        self._api = api
        self._settings = settings
        self._fallback = SettingsServerLookup(settings)

    def _target(self, server: ServerDTO) -> ServerTarget:
        if self._settings.local.enabled and server.address in self._settings.local.addresses:
            return local_target(self._settings, server.handle)
        defaults = self._settings.remote_defaults
        return ServerTarget(
            handle=server.handle,
            host=server.address,
            connection="ssh",
            base_dir=defaults.base_dir,
            python=defaults.python,
            bind_host=defaults.bind_host,
            public_host=server.address,
            port=defaults.port,
            user=server.ssh_user,
            ssh_key_ref=server.credentials_ref,
            install_packages=defaults.install_packages,
            service_user=defaults.service_user,
        )

    async def by_handle(self, handle: str) -> ServerTarget:
        """The API's server of `handle`, else the settings'."""
        try:
            return self._target(await self._api.get_server(handle))
        except NotFoundError:
            pass
        except ApiClientError as error:
            _log.warning("server registry unavailable", handle=handle, error=str(error))
        return await self._fallback.by_handle(handle)

    async def by_address(self, address: str) -> ServerTarget:
        """The API's server with `address`, else the settings'."""
        try:
            offset = 0
            while True:
                page = await self._api.list_servers(limit=100, offset=offset)
                for server in page.items:
                    if server.address == address and server.status != "decommissioned":
                        return self._target(server)
                offset += len(page.items)
                if not page.items or offset >= page.total:
                    break
        except ApiClientError as error:
            _log.warning("server registry unavailable", address=address, error=str(error))
        return await self._fallback.by_address(address)

    async def set_status(self, handle: str, status: ServerStatus) -> None:
        """Record the status in the API; a failure is logged, never raised."""
        await self._fallback.set_status(handle, status)
        try:
            await self._api.update_server(handle, ServerUpdate(status=status))
        except ApiClientError as error:
            _log.warning("server status not recorded", handle=handle, error=str(error))
