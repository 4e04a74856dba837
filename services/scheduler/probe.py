"""Server health probes: a Protocol, a TCP connect probe, and a fake.

`TcpProbe` opens a TCP connection to the server's SSH port (or the port its address names,
`host:port`) and, by default, waits for the SSH banner (`SSH-`), all within a short timeout:
behind a proxy or a NAT that accepts every connection, an open socket alone proves nothing.
Addresses served through Ansible's local connection (`localhost`, `127.0.0.1`, ...) are
reachable by definition and never probed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from shared.api_client.schemas import ServerDTO

__all__ = ["HealthProbe", "MemoryProbe", "TcpProbe", "split_address"]


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
