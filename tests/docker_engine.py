"""A real Docker engine for the tests: found, or installed and started, and stopped after.

Order: `DOCKER_HOST` when set (used as it is, never started); else the default socket when an
engine answers there; else this project's own engine, `dockerd --iptables=false
--bridge=none` with everything under `engine_dir()` (outside the working tree, so its image
and layer cache survive fresh clones): `data/` (data-root), `run/` (exec-root, pidfile,
socket, log); storage driver overlay2 where the kernel allows it, else vfs
(`ORCHESTRATOR_DOCKER_STORAGE_DRIVER` forces one). Debian's `docker.io` (and `mmdebstrap`,
for the base image) are installed with apt-get when missing and this process is root.

Several test runs may share the project's engine: each holds a shared lock on
`run/users.lock` while it uses it, and the run that ends last (the exclusive lock is free)
stops it, whether it started it or found it left over by a killed run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import docker
from docker.errors import DockerException

DEFAULT_SOCKET = Path("/var/run/docker.sock")
API_VERSION = "1.41"
"""Docker 20.10 (Debian 12's docker.io) speaks up to 1.41."""
_APT_PACKAGES = {
    "dockerd": "docker.io",
    "mmdebstrap": "mmdebstrap",
    "docker-compose": "docker-compose",
}
_START_TIMEOUT_S = 60.0
_SOCKET_PATH_MAX = 100
_daemons: list[subprocess.Popen[bytes]] = []
"""The dockerd processes this process started (kept so they are reaped, not leaked)."""
_STOP_TIMEOUT_S = 30.0


class EngineUnavailableError(RuntimeError):
    """No engine answers and none could be started; the message says why."""


def engine_dir() -> Path:
    """Home of the project's own engine (`ORCHESTRATOR_DOCKER_DIR`, else the user cache)."""
    named = os.environ.get("ORCHESTRATOR_DOCKER_DIR")
    if named:
        return Path(named)
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "orchestrator" / "docker"


def answers(base_url: str) -> bool:
    """True when a Docker engine answers a ping at `base_url`."""
    if base_url.startswith("unix://"):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(5)
                probe.connect(base_url.removeprefix("unix://"))
                probe.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                status_line = probe.recv(4096).split(b"\r\n", 1)[0]
                return status_line.split(b" ")[1:2] == [b"200"]
        except OSError:
            return False
    try:
        client = docker.DockerClient(base_url=base_url, version=API_VERSION, timeout=5)
    except DockerException:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def install_missing(*programs: str) -> None:
    """apt-get install the Debian packages of `programs` (dockerd, mmdebstrap) that are
    missing, when this process is root."""
    missing = [_APT_PACKAGES[prog] for prog in programs if shutil.which(prog) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise EngineUnavailableError(f"{', '.join(missing)} missing and cannot be installed here")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip()[-800:]
            raise EngineUnavailableError(f"{' '.join(argv)} failed: {detail}")


@dataclass
class Engine:
    """An engine the tests use; `close()` stops it when this run is the last user of the
    project's own engine."""

    base_url: str
    own: bool
    """True for the project's engine (under `engine_dir()`), False for a found one."""
    started: bool = False
    """True when this run started it."""
    _users: IO[str] | None = field(default=None, repr=False)

    def client(self) -> docker.DockerClient:
        """A new client of this engine (pinned API version: no probing)."""
        return docker.DockerClient(base_url=self.base_url, version=API_VERSION, timeout=120)

    def close(self) -> None:
        """Release this run's use; stop the project's engine if no other run uses it."""
        if self._users is None:
            return
        handle, self._users = self._users, None
        try:
            with _exclusive(engine_dir() / "run" / "start.lock"):
                fcntl.flock(handle, fcntl.LOCK_UN)
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # another run still uses it
                stop_project_engine()
        finally:
            handle.close()


def _pid(run: Path) -> int | None:
    try:
        return int((run / "dockerd.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _gone(pid: int) -> bool:
    """True once `pid` has exited (reaped here when it is this process's child)."""
    for process in list(_daemons):
        if process.pid == pid:
            if process.poll() is None:
                return False
            _daemons.remove(process)
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def stop_project_engine() -> None:
    """SIGTERM the project's dockerd (it stops its containerd and containers), wait for it."""
    run = engine_dir() / "run"
    pid = _pid(run)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if _gone(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _gone(pid)


def _storage_drivers() -> list[str]:
    named = os.environ.get("ORCHESTRATOR_DOCKER_STORAGE_DRIVER")
    return [named] if named else ["overlay2", "vfs"]


def _start_project_engine(home: Path) -> None:
    """Start dockerd with overlay2 (a container starts in about a second), else vfs (every
    layer and container is a full copy: 10-20 s each here)."""
    install_missing("dockerd")
    failures = []
    for driver in _storage_drivers():
        try:
            _start_dockerd(home, driver)
        except EngineUnavailableError as exc:
            failures.append(f"{driver}: {exc}")
            continue
        return
    raise EngineUnavailableError("; ".join(failures))


def _exec_root(run: Path) -> Path:
    """`run/exec`, or a short directory when containerd's sockets under it would be longer
    than a unix socket path may be (108 bytes)."""
    exec_root = run / "exec"
    if len(str(exec_root / "containerd" / "containerd.sock.ttrpc")) < _SOCKET_PATH_MAX:
        return exec_root
    digest = hashlib.sha256(str(run).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"orchestrator-dockerd-{digest}"


def _start_dockerd(home: Path, driver: str) -> None:
    run, data = home / "run", home / "data"
    run.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    sock = run / "docker.sock"
    argv = [
        "dockerd",
        f"--storage-driver={driver}",
        "--iptables=false",
        "--bridge=none",
        f"--data-root={data}",
        f"--exec-root={_exec_root(run)}",
        f"--pidfile={run / 'dockerd.pid'}",
        f"--host=unix://{sock}",
    ]
    log_path = run / "dockerd.log"
    with log_path.open("ab") as log:
        log.write(f"--- {' '.join(argv)}\n".encode())
        log.flush()
        offset = log.tell()
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _daemons.append(process)
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with log_path.open("rb") as log:
                log.seek(offset)
                tail = log.read().decode(errors="replace").strip()[-800:]
            raise EngineUnavailableError(f"dockerd exited ({process.returncode}): {tail}")
        if sock.exists() and answers(f"unix://{sock}"):
            return
        time.sleep(0.2)
    process.terminate()
    process.wait(timeout=_STOP_TIMEOUT_S)
    raise EngineUnavailableError(f"dockerd did not answer within {_START_TIMEOUT_S:g} s")


def acquire() -> Engine:
    """An engine that answers: a configured or running one, else the project's, started."""
    if os.environ.get("DOCKER_HOST"):
        url = os.environ["DOCKER_HOST"]
        if not answers(url):
            raise EngineUnavailableError(f"DOCKER_HOST={url} does not answer")
        return Engine(url, own=False)
    if DEFAULT_SOCKET.exists() and answers(f"unix://{DEFAULT_SOCKET}"):
        return Engine(f"unix://{DEFAULT_SOCKET}", own=False)
    home = engine_dir()
    (home / "run").mkdir(parents=True, exist_ok=True)
    url = f"unix://{home / 'run' / 'docker.sock'}"
    users = (home / "run" / "users.lock").open("a")
    started = False
    try:
        with _exclusive(home / "run" / "start.lock"):
            if not answers(url):
                stop_project_engine()  # a dockerd left hanging by a killed run
                _start_project_engine(home)
                started = True
            fcntl.flock(users, fcntl.LOCK_SH)
    except BaseException:
        users.close()
        raise
    return Engine(url, own=True, started=started, _users=users)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
