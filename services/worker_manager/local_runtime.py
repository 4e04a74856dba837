"""Workers as local processes: `python -m services.worker_wrapper`, one session each.

Each wrapper is spawned with `posix_spawn` in a session (and process group) of its own, so it
outlives a restart of the manager and its whole tree can be killed at once; resource limits
are set on it with `prlimit` before it starts an agent (its children inherit them). Its
stdout and stderr go to `wrapper.log` in the worker's directory. The reference of a worker
is `pid:create_time:worker_id`, so a recycled pid is never mistaken for the worker.

A wrapper's arguments name its manager and the runtime's data directory (`--home`): a manager
owns the wrappers of its id under its own directory only, so two systems on one machine (a
user's `orchestrator up` and a test run, say) that both keep the default manager id never
adopt or stop each other's workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import select
import signal
import sys
import time
from pathlib import Path

import psutil

from services.worker_manager.errors import RuntimeBackendError, WorkerStartError
from services.worker_manager.runtime import WorkerExit, WorkerSpec, poll_exit
from services.worker_manager.settings import ResourceLimits
from shared.messaging.cancel import wait_event

__all__ = ["WRAPPER_MODULE", "LocalProcessRuntime", "tail_of"]

WRAPPER_MODULE = "services.worker_wrapper"
_MB = 1024 * 1024
_LOG_TAIL_BYTES = 2000
_POLL_S = 0.01
"""How often an exit is looked for where the kernel cannot tell it (no pidfd)."""


def tail_of(path: Path, size: int = _LOG_TAIL_BYTES) -> str:
    """The last `size` bytes of a text file ('' when missing)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(path.stat().st_size - size, 0))
            return handle.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return ""


def _apply_limits(pid: int, limits: ResourceLimits) -> None:
    wanted: list[tuple[int, int]] = [(resource.RLIMIT_CORE, 0)]
    wanted.append((resource.RLIMIT_NOFILE, limits.open_files))
    if limits.memory_mb:
        wanted.append((resource.RLIMIT_AS, limits.memory_mb * _MB))
    if limits.max_processes:
        wanted.append((resource.RLIMIT_NPROC, limits.max_processes))
    if limits.file_size_mb:
        wanted.append((resource.RLIMIT_FSIZE, limits.file_size_mb * _MB))
    for which, value in wanted:
        _, hard = resource.prlimit(pid, which)
        capped = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.prlimit(pid, which, (capped, capped))


def _parse_ref(ref: str) -> tuple[int, float, str]:
    pid, ctime, worker_id = ref.split(":", 2)
    return int(pid), float(ctime), worker_id


class _ExitWatch:
    """Waits for one process to exit: woken by the kernel through a pidfd (Linux 5.3+),
    else looking every `_POLL_S`. Works for any process, not only this one's children."""

    def __init__(self, pid: int) -> None:
        self.fd: int | None = None
        with contextlib.suppress(OSError, AttributeError):  # gone already, or no pidfd here
            self.fd = os.pidfd_open(pid)

    def __enter__(self) -> _ExitWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)

    def __call__(self, timeout_s: float) -> None:
        """Return once the process exited (a zombie counts) or after `timeout_s`."""
        if self.fd is None:
            time.sleep(min(timeout_s, _POLL_S))
            return
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.poll(max(int(timeout_s * 1000), 1))


class LocalProcessRuntime:
    """Runs each worker's wrapper as a local process."""

    name = "local"

    def __init__(self, data_dir: Path, *, python: str = sys.executable) -> None:
        self.data_dir = data_dir
        self._home = str(data_dir.resolve())
        self.python = python
        self._children: dict[int, int | None] = {}
        """Pids this runtime spawned → exit status once reaped."""

    def _spawn(self, spec: WorkerSpec) -> int:
        spec.worker_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            self.python,
            "-m",
            WRAPPER_MODULE,
            "--worker-id",
            spec.worker_id,
            "--manager-id",
            spec.manager_id,
            "--home",
            self._home,
        ]
        log_flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(spec.log_file), log_flags, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        return os.posix_spawn(
            self.python,
            argv,
            spec.env,
            file_actions=actions,
            setsid=True,
            setsigdef=(signal.SIGINT, signal.SIGTERM, signal.SIGPIPE),
        )

    async def start(self, spec: WorkerSpec) -> str:
        """Spawn the wrapper; answer `pid:create_time:worker_id`."""
        try:
            pid = self._spawn(spec)
        except OSError as exc:
            raise WorkerStartError(f"cannot start worker process: {exc}") from None
        self._children[pid] = None
        try:
            _apply_limits(pid, spec.limits)
            create_time = psutil.Process(pid).create_time()
        except (OSError, psutil.Error, ValueError) as exc:
            self._kill_group(pid)
            self._reap(pid, block=True)
            raise WorkerStartError(f"cannot set up worker process: {exc}") from None
        return f"{pid}:{create_time}:{spec.worker_id}"

    def _reap(self, pid: int, *, block: bool = False) -> bool:
        """Collect a child's exit status; True when it has exited."""
        if pid not in self._children:
            return False
        if self._children[pid] is not None:
            return True
        try:
            done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            self._children[pid] = 0
            return True
        if done == 0:
            return False
        self._children[pid] = os.waitstatus_to_exitcode(status)
        return True

    def _alive(self, ref: str) -> bool:
        pid, ctime, _ = _parse_ref(ref)
        if self._reap(pid):
            return False
        try:
            proc = psutil.Process(pid)
            alive = abs(proc.create_time() - ctime) < 0.01
            if alive and proc.status() == psutil.STATUS_ZOMBIE:
                self._reap(pid)  # exited between the two looks: collect its status now
                return False
            return alive
        except psutil.Error:
            return False

    async def is_alive(self, ref: str) -> bool:
        """True while the wrapper process runs (the same process, not a recycled pid)."""
        return self._alive(ref)

    async def wait_exit(self, ref: str, *, timeout_s: float, poll_s: float) -> bool:
        """True once the wrapper process has exited, False while it still runs after
        `timeout_s`: woken by the kernel through a pidfd in the event loop, so a long wait
        costs nothing (looking every `poll_s` only where there is no pidfd)."""
        pid, _, _ = _parse_ref(ref)
        fd: int | None = None
        with contextlib.suppress(OSError, AttributeError):  # gone already, or no pidfd here
            fd = os.pidfd_open(pid)
        try:
            # looked at after the open: a pidfd of a recycled pid fails this check
            if not self._alive(ref):
                return True
            if fd is None:
                return await poll_exit(self, ref, timeout_s=timeout_s, poll_s=poll_s)
            loop = asyncio.get_running_loop()
            exited = asyncio.Event()
            loop.add_reader(fd, exited.set)
            try:
                await wait_event(exited, timeout_s)
            finally:
                loop.remove_reader(fd)
            return not self._alive(ref)
        finally:
            if fd is not None:
                os.close(fd)

    async def exit_info(self, ref: str) -> WorkerExit:
        """The exit code (for our own children) and the tail of the wrapper's log."""
        pid, _, worker_id = _parse_ref(ref)
        self._reap(pid)
        code = self._children.get(pid)
        tail = tail_of(self.data_dir / worker_id / "wrapper.log")
        how = (
            "unknown exit"
            if code is None
            else (f"killed by signal {-code}" if code < 0 else f"exit code {code}")
        )
        detail = f"worker process {pid} ended ({how})"
        return WorkerExit(exit_code=code, detail=f"{detail}; log tail: {tail}" if tail else detail)

    @staticmethod
    def _kill_group(pid: int) -> None:
        """SIGKILL the wrapper's group and every process of its session (its agents)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        for proc in psutil.process_iter():
            with contextlib.suppress(OSError, psutil.Error):
                if proc.pid != os.getpid() and os.getsid(proc.pid) == pid:
                    proc.kill()

    def _stop_blocking(self, ref: str, grace_s: float) -> None:
        pid, _, _ = _parse_ref(ref)
        if not self._alive(ref):
            self._kill_group(pid)  # strays of a dead leader
            return
        try:
            leader = psutil.Process(pid)
            tree = [leader, *leader.children(recursive=True)]
        except psutil.Error:
            tree = []
        deadline = time.monotonic() + grace_s
        with _ExitWatch(pid) as wait_exit:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            while not self._reap(pid) and self._alive(ref):
                left_s = deadline - time.monotonic()
                if left_s <= 0:
                    break
                wait_exit(left_s)
        self._kill_group(pid)
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        self._reap(pid, block=pid in self._children)  # its status, before psutil's wait takes it
        psutil.wait_procs(tree, timeout=2)

    async def stop(self, ref: str, *, grace_s: float) -> None:
        """SIGTERM the wrapper, wait `grace_s`, then SIGKILL its group and every descendant."""
        try:
            await asyncio.to_thread(self._stop_blocking, ref, grace_s)
        except (OSError, psutil.Error) as exc:
            raise RuntimeBackendError(f"cannot stop worker {ref}: {exc}") from None

    async def list_owned(self, manager_id: str) -> dict[str, str]:
        """Wrapper processes of `manager_id` found in the process table: id → ref."""
        return await asyncio.to_thread(self._scan, manager_id)

    @property
    def mounts_workspace(self) -> bool:
        """False: a local wrapper finds its workspace by its path, whatever was moved there."""
        return False

    def can_pool(self, repo_url: str | None) -> bool:
        """Always: a local wrapper sees the host's paths."""
        return True

    async def is_current(self, ref: str) -> bool:
        """Always (a wrapper started from older sources is not told apart)."""
        return True

    async def binding(self, spec: WorkerSpec, ref: str) -> dict[str, str]:
        """The environment as it is: a local wrapper sees the manager's paths and Redis."""
        return spec.env

    def _scan(self, manager_id: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for proc in psutil.process_iter(["cmdline", "create_time", "status"]):
            try:
                argv = proc.info["cmdline"] or []
                if WRAPPER_MODULE not in argv or proc.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                if argv[argv.index("--manager-id") + 1] != manager_id:
                    continue
                if "--home" in argv and argv[argv.index("--home") + 1] != self._home:
                    continue  # another system's (a wrapper without --home predates it)
                worker_id = argv[argv.index("--worker-id") + 1]
            except (psutil.Error, ValueError, IndexError):
                continue
            found[worker_id] = f"{proc.pid}:{proc.info['create_time']}:{worker_id}"
        return found
