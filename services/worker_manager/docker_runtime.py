"""Workers as Docker containers (docker SDK): one container (and network) per worker.

Each container runs the wrapper from `DockerSettings.image` as the container's root with
only the capabilities it needs to start its agent as an unprivileged user of another uid
(`DockerSettings.separate_agent`; else both as that user, every capability dropped),
`no-new-privileges`, a read-only root filesystem (tmpfs on /tmp and the home), CPU / memory
/ pid limits, the network `DockerSettings.network` names (a bridge network of its own by
default), the worker's workspace at `/workspace`, its session state at `/session` (a named
volume that outlives the container when the create command asked for a session volume), a
git remote that is a local path at the same path, and labels naming the manager and the
worker, by which a later run of the manager finds its containers.

Warm containers of the pool (pool.py) start before their task exists: the worker's own
(empty) workspace and session directories are mounted from the start, as are the local
remotes' directories `DockerSettings.pool_remote_dirs`; at bind the manager clones into the
workspace on the host, `binding` hands the files to the container's user and translates the
task's environment to what the container sees (`/workspace`, `/session`, the Redis URL from
inside, the image's own variables), and the wrapper takes it over.
See docs/docker.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import docker
import requests
from docker.errors import APIError, DockerException, NotFound

from services.worker_manager.errors import RuntimeBackendError, WorkerStartError
from services.worker_manager.local_runtime import WRAPPER_MODULE
from services.worker_manager.runtime import WorkerExit, WorkerSpec, poll_exit
from services.worker_manager.settings import DockerSettings

__all__ = ["LABEL_HOME", "LABEL_MANAGER", "LABEL_WORKER", "WRAPPER_CAPABILITIES", "DockerRuntime"]

LABEL_MANAGER = "org.codegen-orchestrator.manager"
LABEL_WORKER = "org.codegen-orchestrator.worker"
LABEL_HOME = "org.codegen-orchestrator.home"
"""The data directory of the manager that made the container: two systems on one engine that
both keep the default manager id never adopt or stop each other's workers."""
_HOST_ONLY_ENV = frozenset({"PATH", "HOME", "TMPDIR", "SHELL", "USER", "LOGNAME"})
_WORKSPACE = "/workspace"
_SESSION = "/session"
_HOME = "/home/agent"
_CONFLICT = 409
WRAPPER_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID", "SETPCAP")
"""What the wrapper keeps when it runs as the container's root beside an agent of another uid
(`DockerSettings.separate_agent`): become the agent's user and drop every capability for it
(SETUID, SETGID, SETPCAP), hand it its prompt file and work in its workspace and session
(CHOWN, DAC_OVERRIDE, FOWNER), and kill its processes (KILL)."""
T = TypeVar("T")


def _local_path(url: str) -> Path | None:
    """The path of a git URL that names a directory of this host (`/…`, `file:///…`)."""
    return Path(url.removeprefix("file://")) if url.startswith(("/", "file:///")) else None


def _local_remote(workspace: Path) -> Path | None:
    """The workspace's `origin` when it is a directory on this host (a local git provider's
    bare repository), which the container then gets at the same path (to push, the
    worker's uid needs write access to it; see docs/docker.md)."""
    config = workspace / ".git" / "config"
    if not config.is_file():
        return None
    done = subprocess.run(
        ["git", "config", "--file", str(config), "--get", "remote.origin.url"],
        capture_output=True,
        text=True,
        check=False,
    )
    path = _local_path(done.stdout.strip())
    return path.resolve() if path is not None and path.is_dir() else None


def _within(path: Path, top: Path) -> bool:
    """True when `path` is `top` or under it, both taken as written (absolute, normalized)."""
    inner, outer = os.path.normpath(os.path.abspath(path)), os.path.normpath(os.path.abspath(top))
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def _env_dict(entries: list[str] | None) -> dict[str, str]:
    """`["NAME=value", …]` (an image's or container's Env) → a dict."""
    pairs = (entry.partition("=") for entry in entries or [])
    return {name: value for name, _, value in pairs if name}


def _hand_over(paths: list[Path], uid: int, gid: int) -> None:
    """chown -R `paths` to the container's user (the manager is root here)."""
    for top in paths:
        if not top.exists():
            continue
        os.chown(top, uid, gid)
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


class DockerRuntime:
    """Runs each worker's wrapper in a container of its own."""

    name = "docker"

    def __init__(
        self,
        settings: DockerSettings,
        *,
        data_dir: Path,
        client: docker.DockerClient | None = None,
    ) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self._client = client
        self._image_env: dict[str, dict[str, str]] = {}
        """Image id → the variables its config sets (PATH, HOME, PYTHONPATH, …)."""

    @property
    def client(self) -> docker.DockerClient:
        """The Docker client (connected on first use)."""
        if self._client is None:
            if self.settings.base_url:
                self._client = docker.DockerClient(
                    base_url=self.settings.base_url, version=self.settings.api_version
                )
            else:
                self._client = docker.from_env(version=self.settings.api_version)
        return self._client

    def close(self) -> None:
        """Close the client's connections."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _call(self, operation: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(operation)
        except NotFound:
            raise
        except (DockerException, requests.RequestException) as exc:
            raise RuntimeBackendError(f"docker: {exc}") from None

    def _separate(self) -> bool:
        """True when the wrapper runs as root of the container and the agent as `user`."""
        return self.settings.separate_agent and os.geteuid() == 0

    def _environment(self, spec: WorkerSpec) -> dict[str, str]:
        env = {k: v for k, v in spec.env.items() if k not in _HOST_ONLY_ENV}
        if self._separate():
            uid, gid = self._user()
            env["WORKER_AGENT_USER"] = f"{uid}:{gid}"
        env["WORKER_WORKSPACE"] = _WORKSPACE
        env["WORKER_SESSION_DIR"] = _SESSION
        if self.settings.redis_url:  # the same credentials (a worker's ACL user), another host
            given = urlsplit(spec.env.get("WORKER_REDIS_URL", ""))
            inside = urlsplit(self.settings.redis_url)
            if given.username:
                userinfo = given.netloc.rpartition("@")[0]
                inside = inside._replace(netloc=f"{userinfo}@{inside.netloc.rpartition('@')[2]}")
            env["WORKER_REDIS_URL"] = urlunsplit(inside)
        return env

    def _user(self) -> tuple[int, int]:
        if os.geteuid() != 0:
            return os.geteuid(), os.getegid()
        uid, _, gid = self.settings.user.partition(":")
        return int(uid), int(gid or uid)

    def _run(self, spec: WorkerSpec) -> str:
        labels = {
            LABEL_MANAGER: spec.manager_id,
            LABEL_WORKER: spec.worker_id,
            LABEL_HOME: str(self.data_dir.resolve()),
        }
        uid, gid = self._user()
        remote = _local_remote(spec.workspace)
        session_source = spec.session_volume or str(spec.session_dir.resolve())
        if spec.warm:  # empty until bind, which hands them over (git refuses another owner's)
            spec.workspace.mkdir(parents=True, exist_ok=True)
            spec.session_dir.mkdir(parents=True, exist_ok=True)
        elif os.geteuid() == 0:
            _hand_over([spec.workspace, spec.session_dir], uid, gid)
        mode = self.settings.network
        network = None
        if not mode:
            network = self.client.networks.create(
                f"{self.settings.network_prefix}{spec.worker_id}", driver="bridge", labels=labels
            )
        volumes = {
            str(spec.workspace.resolve()): {"bind": _WORKSPACE, "mode": "rw"},
            session_source: {"bind": _SESSION, "mode": "rw"},
        }
        if remote is not None:
            volumes[str(remote)] = {"bind": str(remote), "mode": "rw"}
        if spec.warm:  # its task's remote is not known yet: every pooled one
            for top in self.settings.pool_remote_dirs:
                where = os.path.normpath(os.path.abspath(top))
                volumes[str(Path(where).resolve())] = {"bind": where, "mode": "rw"}
        limits = spec.limits
        options: dict[str, Any] = {
            "name": f"orchestrator-worker-{spec.worker_id}",
            "command": [
                "python",
                "-m",
                WRAPPER_MODULE,
                "--worker-id",
                spec.worker_id,
                "--manager-id",
                spec.manager_id,
            ],
            "detach": True,
            "environment": self._environment(spec),
            "labels": labels,
            "user": "0:0" if self._separate() else f"{uid}:{gid}",
            "cap_drop": ["ALL"],
            "cap_add": list(WRAPPER_CAPABILITIES) if self._separate() else [],
            "security_opt": ["no-new-privileges:true"],
            "read_only": self.settings.read_only,
            "tmpfs": {
                path: f"rw,nosuid,nodev,size={self.settings.tmpfs_mb}m,uid={uid},gid={gid}"
                for path in ("/tmp", _HOME)  # noqa: S108 - the container's own /tmp
            },
            "nano_cpus": int(limits.cpus * 1_000_000_000),
            "pids_limit": limits.pids,
            "working_dir": _WORKSPACE,
            "volumes": volumes,
        }
        if network is not None:
            options["network"] = network.name
        elif mode == "host":
            options["network_mode"] = "host"
        else:
            options["network"] = mode
        if limits.memory_mb:
            options["mem_limit"] = f"{limits.memory_mb}m"
            options["memswap_limit"] = f"{limits.memory_mb}m"  # no swap on top
        try:
            container = self.client.containers.run(self.settings.image, **options)
        except (DockerException, requests.RequestException):
            if network is not None:
                network.remove()
            raise
        return str(container.id)

    async def start(self, spec: WorkerSpec) -> str:
        """Create the worker's network and container and start it; answer the container id."""
        try:
            return await self._call(lambda: self._run(spec))
        except (RuntimeBackendError, NotFound) as exc:
            raise WorkerStartError(f"cannot start worker container: {exc}") from None

    @property
    def mounts_workspace(self) -> bool:
        """True: `/workspace` is the worker's own directory, mounted when the container started."""
        return True

    def can_pool(self, repo_url: str | None) -> bool:
        """True unless the remote is a local directory outside `pool_remote_dirs` (a warm
        container could not reach it: its mounts were fixed before the task was known)."""
        path = _local_path(repo_url or "")
        if path is None:
            return True
        return any(_within(path, top) for top in self.settings.pool_remote_dirs)

    def _runs_current_image(self, ref: str) -> bool:
        try:
            current = str(self.client.images.get(self.settings.image).id)
        except NotFound:
            return True  # nothing to compare with (a start would fail anyway)
        return str(self.client.api.inspect_container(ref).get("Image")) == current

    async def is_current(self, ref: str) -> bool:
        """False when the container runs another image than the one `settings.image` names
        now (rebuilt or changed since it started) or is gone: a warm one is then not
        adopted, and a task gets a container of the current image."""
        try:
            return await self._call(lambda: self._runs_current_image(ref))
        except NotFound:
            return False

    def _variables_of_image(self, ref: str) -> dict[str, str]:
        image_id = str(self.client.api.inspect_container(ref).get("Image") or "")
        if image_id not in self._image_env:
            config = self.client.images.get(image_id).attrs.get("Config") or {}
            self._image_env[image_id] = _env_dict(config.get("Env"))
        return self._image_env[image_id]

    async def binding(self, spec: WorkerSpec, ref: str) -> dict[str, str]:
        """Hand the prepared workspace and session to the container's user (a manager running
        as root) and answer the task's environment as a fresh container of it would have it:
        the image's variables, then `spec.env` translated (`/workspace`, `/session`, the Redis
        URL from inside; none of the host's PATH, HOME, …). The wrapper replaces its whole
        environment with it."""
        if os.geteuid() == 0:
            uid, gid = self._user()
            await asyncio.to_thread(_hand_over, [spec.workspace, spec.session_dir], uid, gid)
        try:
            image_env = await self._call(lambda: self._variables_of_image(ref))
        except NotFound:
            raise WorkerStartError(f"warm container {ref[:12]} is gone") from None
        return {**image_env, **self._environment(spec)}

    async def is_alive(self, ref: str) -> bool:
        """True while the container runs."""
        try:
            container = await self._call(lambda: self.client.containers.get(ref))
        except NotFound:
            return False
        return bool(container.status == "running")

    async def wait_exit(self, ref: str, *, timeout_s: float, poll_s: float) -> bool:
        """True once the container stopped (looked at every `poll_s`), False after
        `timeout_s`."""
        return await poll_exit(self, ref, timeout_s=timeout_s, poll_s=poll_s)

    async def exit_info(self, ref: str) -> WorkerExit:
        """The container's exit code and the tail of its log."""
        try:
            attrs = await self._call(lambda: self.client.api.inspect_container(ref))
            logs = await self._call(lambda: self.client.api.logs(ref, tail=20))
        except NotFound:
            return WorkerExit(exit_code=None, detail=f"container {ref[:12]} is gone")
        state = attrs.get("State", {})
        code = state.get("ExitCode")
        tail = logs.decode("utf-8", errors="replace").strip() if isinstance(logs, bytes) else ""
        detail = f"container {ref[:12]} exited (exit code {code})"
        if state.get("OOMKilled"):
            limit = attrs.get("HostConfig", {}).get("Memory") or 0
            detail += f"; out of memory: the kernel killed it at its {limit // 2**20} MB limit"
        return WorkerExit(exit_code=code, detail=f"{detail}; log tail: {tail}" if tail else detail)

    def _remove(self, ref: str, grace_s: float) -> None:
        try:
            container = self.client.containers.get(ref)
        except NotFound:
            return
        worker_id = (container.labels or {}).get(LABEL_WORKER)
        own_network = not self.settings.network
        try:
            container.stop(timeout=max(int(grace_s), 0))
            container.remove(force=True)
        except NotFound:
            return
        except APIError as exc:
            if exc.status_code != _CONFLICT:  # another stop is removing it already
                raise
            return
        if worker_id and own_network:
            with contextlib.suppress(NotFound):
                self.client.networks.get(f"{self.settings.network_prefix}{worker_id}").remove()

    async def stop(self, ref: str, *, grace_s: float) -> None:
        """Stop (SIGTERM, then SIGKILL after `grace_s`) and remove the container and network."""
        await self._call(lambda: self._remove(ref, grace_s))

    async def list_owned(self, manager_id: str) -> dict[str, str]:
        """Running containers labelled with `manager_id`: worker id → container id."""
        containers = await self._call(
            lambda: self.client.containers.list(
                filters={"label": f"{LABEL_MANAGER}={manager_id}", "status": "running"},
                sparse=True,
            )
        )
        found: dict[str, str] = {}
        home = str(self.data_dir.resolve())
        for container in containers:
            labels = container.attrs.get("Labels") or {}
            if LABEL_WORKER not in labels or labels.get(LABEL_MANAGER) != manager_id:
                continue
            if labels.get(LABEL_HOME, home) != home:
                continue  # another system's (a container without the label predates it)
            found[labels[LABEL_WORKER]] = str(container.id)
        return found
