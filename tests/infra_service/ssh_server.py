"""A real SSH server for the tests (this machine has no sshd): asyncssh on 127.0.0.1.

It accepts exactly one generated client key (public-key authentication only; passwords and
every other key are refused), runs each `exec` request with `/bin/sh -c` in a process group
of its own under a clean environment (PATH, HOME, USER, LANG), pipes stdin / stdout / stderr
byte for byte, answers the exit status, and serves SFTP on the real filesystem, which is what
OpenSSH's `ssh` and `sftp` clients, and so Ansible's ssh connection, need. Like sshd without a
terminal, it does not kill a command whose client went away: the command runs on, unheard
(what infra-service must clean up after a cancelled job). Stopping the server kills them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

__all__ = ["SshServer", "running_ssh_server"]

_CHUNK = 65536


@dataclass
class SshServer:
    """A running test SSH server and what a client needs to reach it."""

    port: int
    client_private_key: str
    """The OpenSSH private key the server accepts (what a `ssh_key_ref` resolves to)."""
    known_hosts_line: str
    """`[127.0.0.1]:<port> <host key>`: a `known_hosts` line for strict host key checking."""
    commands: list[str] = field(default_factory=list)
    """Every command executed, in order (SFTP sessions are not commands)."""
    logins: list[str] = field(default_factory=list)
    """The user name of every authenticated connection."""
    groups: set[int] = field(default_factory=set)
    """Process groups of the commands still running."""


class _Server(asyncssh.SSHServer):
    def __init__(self, accepted: asyncssh.SSHKey, record: SshServer) -> None:
        self._accepted = accepted
        self._record = record

    def begin_auth(self, username: str) -> bool:
        return True  # authentication is required for everyone

    def password_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        accepted = key.export_public_key() == self._accepted.export_public_key()
        if accepted:
            self._record.logins.append(username)
        return accepted


async def _pump_out(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
    """Forward the command's output; once the client is gone, read it to the end unseen."""
    connected = True
    while chunk := await source.read(_CHUNK):
        if connected:
            try:
                sink.write(chunk)
                await sink.drain()
            except (asyncssh.Error, BrokenPipeError, ConnectionError):
                connected = False


async def _pump_in(source: asyncssh.SSHReader[bytes], sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(_CHUNK):
            sink.write(chunk)
            await sink.drain()
    except (BrokenPipeError, ConnectionResetError, asyncssh.Error):
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.close()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _process_handler(home: Path, record: SshServer):  # type: ignore[no-untyped-def]  # asyncssh's factory type
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "USER": os.environ.get("USER", "root"),
        "LANG": "C.UTF-8",
    }

    async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
        command = process.command
        if not command:
            process.stderr.write(b"this test server runs commands only, no shells\n")
            process.exit(1)
            return
        record.commands.append(command)
        child = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=home,
            start_new_session=True,
        )
        assert child.stdin is not None
        assert child.stdout is not None
        assert child.stderr is not None
        record.groups.add(child.pid)
        feeding = asyncio.create_task(_pump_in(process.stdin, child.stdin))
        try:
            await asyncio.gather(
                _pump_out(child.stdout, process.stdout), _pump_out(child.stderr, process.stderr)
            )
            status = await child.wait()
        except asyncio.CancelledError:
            _kill_group(child.pid)  # the server stops: nothing it started may outlive it
            await child.wait()
            raise
        finally:
            record.groups.discard(child.pid)
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding
        with contextlib.suppress(asyncssh.Error, BrokenPipeError, ConnectionError, OSError):
            process.exit(status if status >= 0 else 128 - status)

    return handle


@contextlib.asynccontextmanager
async def running_ssh_server(home: Path) -> AsyncIterator[SshServer]:
    """An SSH server on 127.0.0.1 (a free port) whose commands run with HOME=`home`."""
    await asyncio.to_thread(home.mkdir, parents=True, exist_ok=True)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    record = SshServer(
        port=0,
        client_private_key=client_key.export_private_key("openssh").decode(),
        known_hosts_line="",
    )
    acceptor = await asyncssh.create_server(
        lambda: _Server(client_key, record),
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        process_factory=_process_handler(home, record),
        sftp_factory=True,
        allow_scp=False,
        encoding=None,
        keepalive_interval=0,
    )
    record.port = acceptor.sockets[0].getsockname()[1]
    public = host_key.export_public_key("openssh").decode().strip()
    record.known_hosts_line = f"[127.0.0.1]:{record.port} {public}"
    try:
        yield record
    finally:
        acceptor.close()
        await acceptor.wait_closed()
        for group in list(record.groups):
            _kill_group(group)
