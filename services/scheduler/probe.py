"""Health probes of servers and of deployed apps: Protocols, real probes, and fakes.

`TcpProbe` opens a TCP connection to the server's SSH port (or the port its address names,
`host:port`) and, by default, waits for the SSH banner (`SSH-`), all within a short timeout:
behind a proxy or a NAT that accepts every connection, an open socket alone proves nothing.
Addresses served through Ansible's local connection (`localhost`, `127.0.0.1`, ...) are
reachable by definition and never probed.

`HttpAppProbe` GETs a release's health path; `SupervisorRestarts` reads the restart count
the supervisor (`supervise.py`) keeps beside a project deployed on the local server, and,
for a release without a URL (a bot-only project), whether its processes run (their pid
files name live processes): the health of a release that has no web service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from shared.api_client.schemas import DeployDTO, ServerDTO

__all__ = [
    "AppProbe",
    "HealthProbe",
    "HttpAppProbe",
    "MemoryAppProbe",
    "MemoryProbe",
    "NoRestartCounts",
    "RestartCounts",
    "SupervisorRestarts",
    "TcpProbe",
    "split_address",
]


class HealthProbe(Protocol):
    """Tells whether a server answers."""

    async def reachable(self, server: ServerDTO) -> bool:
        """True when the server answers; False (never an exception) when it does not."""
        ...


def split_address(address: str, default_port: int) -> tuple[str, int]:
    """`host:port` → (host, port); a bare host or IPv6 literal gets `default_port`."""
    if address.startswith("["):  # [::1]:22
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port.isdigit() else default_port
    host, sep, port = address.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return address, default_port


class TcpProbe:
    """A server is reachable when a TCP connection to its port opens and, unless `banner`
    is empty, the server's first bytes start with `banner`, all within `timeout_s`."""

    def __init__(
        self,
        *,
        port: int,
        timeout_s: float,
        banner: bytes = b"SSH-",
        local_addresses: Iterable[str] = (),
    ) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self.banner = banner
        self.local_addresses = frozenset(local_addresses)

    async def reachable(self, server: ServerDTO) -> bool:
        """Connect, read the banner, close."""
        host, port = split_address(server.address, self.port)
        if server.address in self.local_addresses or host in self.local_addresses:
            return True
        check = asyncio.ensure_future(self._check(host, port))
        try:
            done, _ = await asyncio.wait([check], timeout=self.timeout_s)
        finally:
            if not check.done():
                check.cancel()
                await asyncio.wait([check])
        if not done or check.cancelled():
            return False
        try:
            return check.result()
        except (OSError, asyncio.IncompleteReadError):
            return False

    async def _check(self, host: str, port: int) -> bool:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            if not self.banner:
                return True
            return await reader.readexactly(len(self.banner)) == self.banner
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@dataclass
class MemoryProbe:
    """A probe that answers from a set of reachable server handles."""

    reachable_handles: set[str] = field(default_factory=set)

    async def reachable(self, server: ServerDTO) -> bool:
        """True for the handles in `reachable_handles`."""
        return server.handle in self.reachable_handles


class AppProbe(Protocol):
    """Tells whether a deployed release answers its health check."""

    async def healthy(self, url: str) -> bool:
        """True when the app at `url` is healthy; False (never an exception) otherwise."""
        ...


class HttpAppProbe:
    """Healthy: `GET <url><path>` answers 2xx within `timeout_s` (redirects not followed)."""

    def __init__(self, *, timeout_s: float, path: str = "/health") -> None:
        self.timeout_s = timeout_s
        self.path = path

    async def healthy(self, url: str) -> bool:
        """One GET of the health path."""
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                response = await client.get(f"{url.rstrip('/')}{self.path}")
        except httpx.HTTPError:
            return False
        return response.is_success


@dataclass
class MemoryAppProbe:
    """An app probe that answers from a set of healthy URLs."""

    healthy_urls: set[str] = field(default_factory=set)

    async def healthy(self, url: str) -> bool:
        """True for the URLs in `healthy_urls`."""
        return url in self.healthy_urls


class RestartCounts(Protocol):
    """How many times the supervisor restarted a release (None: not known here)."""

    def restarts(self, release: DeployDTO) -> int | None:
        """The restart count of `release`, or None."""
        ...

    def processes_up(self, release: DeployDTO) -> bool | None:
        """Whether every process of `release` runs (None: not known here)."""
        ...


class NoRestartCounts:
    """Restart counts of no server."""

    def restarts(self, release: DeployDTO) -> int | None:
        """Never known."""
        return None

    def processes_up(self, release: DeployDTO) -> bool | None:
        """Never known."""
        return None


class SupervisorRestarts:
    """Reads `<apps_dir>/<app name>/restarts.json`, which the supervisor of the local server
    writes (`{"commit": ..., "restarts": N}`); a count of another commit, or no file (a
    project deployed elsewhere), is not this release's."""

    def __init__(self, apps_dir: Path, app_name_of: Callable[[str], str]) -> None:
        self.apps_dir = apps_dir
        self.app_name_of = app_name_of

    def restarts(self, release: DeployDTO) -> int | None:
        """The count of `release`'s commit, or None."""
        try:
            path = self.apps_dir / self.app_name_of(release.project_id) / "restarts.json"
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("commit") != release.sha:
            return None
        count = record.get("restarts")
        return count if isinstance(count, int) and count >= 0 else None

    def processes_up(self, release: DeployDTO) -> bool | None:
        """True when each process of the release's service.json (`app` when it has a web
        `command`, each of `workers`) has a pid file naming a live, non-zombie process;
        None when the release is not this server's (no service.json of its commit)."""
        try:
            app_dir = self.apps_dir / self.app_name_of(release.project_id)
            service = json.loads((app_dir / "service.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(service, dict) or service.get("commit") != release.sha:
            return None
        labels = ["app"] if service.get("command") else []
        labels += [str(w.get("name")) for w in service.get("workers") or [] if isinstance(w, dict)]
        return bool(labels) and all(_pid_alive(app_dir / f"{label}.pid") for label in labels)


def _pid_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().strip())
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
