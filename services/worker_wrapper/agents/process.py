"""Run an agent CLI as a process group: stream its stdout, bound it by a timeout.

The child starts in a process group of its own (in the wrapper's session, so the manager
can still find it after the wrapper died), and a timeout kills that whole group, then every
descendant that escaped the group; nothing is left behind. Stderr is kept as a bounded
tail for error messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

__all__ = ["CliOutcome", "drop_privileges_argv", "kill_process_tree", "run_cli"]

_CAP_SETPCAP = 8

_LINE_LIMIT_BYTES = 32 * 1024 * 1024
_STDERR_TAIL_BYTES = 4096
_DRAIN_AFTER_EXIT_S = 2.0


@dataclass(frozen=True)
class CliOutcome:
    """How a CLI run ended."""

    exit_code: int | None
    """The exit code (negative: killed by that signal); None when it had to be killed."""
    timed_out: bool
    stderr_tail: str
    stopped: bool = False
    """True when `stop` was set and the process tree was killed for it."""


def _descendants(pid: int) -> list[psutil.Process]:
    import psutil  # here, as in kill_process_tree: a worker that never kills skips its import

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def kill_process_tree(pid: int, *, grace_s: float = 2.0) -> None:
    """SIGTERM the process group led by `pid`, SIGKILL it after `grace_s`, then strays.

    Blocking (it waits up to `grace_s` and a little more); call it from a thread in async
    code. Descendants that left the group (their own session) are found through the
    process table and killed too: those alive before the SIGTERM, and those the tree started
    during the grace (a CLI may go on after the SIGTERM and start a tool's command in a
    session of its own). For the second look the tree is frozen first (SIGSTOP), so that
    nothing is started between the look and the SIGKILL.
    """
    import psutil

    known = {proc.pid: proc for proc in _descendants(pid)}
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    try:
        leader = [psutil.Process(pid)]
    except psutil.Error:
        leader = []
    psutil.wait_procs(leader + list(known.values()), timeout=grace_s)
    _freeze_tree(pid, leader, known)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    alive = []
    for proc in known.values():
        with contextlib.suppress(psutil.Error):
            proc.kill()
            alive.append(proc)
    psutil.wait_procs(alive, timeout=grace_s)


def _freeze_tree(pid: int, leader: list[psutil.Process], known: dict[int, psutil.Process]) -> None:
    """Stop (SIGSTOP) the group led by `pid` and every process of the tree, until a look
    finds no process not stopped yet; what the looks find is added to `known`."""
    import psutil

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGSTOP)
    stopped: set[int] = set()
    roots = [*leader, *known.values()]
    for _ in range(64):  # each round stops what the last one found: a fork bomb ends too
        fresh: list[psutil.Process] = []
        for root in roots:
            with contextlib.suppress(psutil.Error):
                if root.pid not in stopped:
                    root.suspend()
                    stopped.add(root.pid)
            with contextlib.suppress(psutil.Error):
                for child in root.children(recursive=True):
                    if child.pid not in stopped and child.pid not in known:
                        fresh.append(child)
        if not fresh:
            break
        for proc in fresh:
            known.setdefault(proc.pid, proc)
        roots = fresh


async def _read_lines(stream: asyncio.StreamReader, on_line: Callable[[str], None]) -> None:
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # a line longer than the limit: skip what was buffered
            continue
        if not raw:
            return
        on_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))


async def _read_tail(stream: asyncio.StreamReader, tail: deque[bytes]) -> None:
    while chunk := await stream.read(1024):
        tail.append(chunk)
        while sum(len(part) for part in tail) > _STDERR_TAIL_BYTES and len(tail) > 1:
            tail.popleft()


async def run_cli(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdin_text: str | None,
    timeout_s: float,
    on_line: Callable[[str], None],
    kill_grace_s: float = 2.0,
    run_as: tuple[int, int] | None = None,
    stop: asyncio.Event | None = None,
) -> CliOutcome:
    """Run `argv` in its own process group; feed each stdout line to `on_line`.

    `run_as` (uid, gid): the process drops to that user and group (no supplementary
    groups) before it starts; this process must be root for it. With util-linux's
    `setpriv` and CAP_SETPCAP (root on a host; the wrapper of a Docker worker) it also
    empties its capability bounding and inheritable sets and sets no-new-privileges, so
    nothing it runs can regain a privilege. Setting `stop` kills the
    process tree at once (a budget reached). Raises `OSError` when the
    program cannot be started (not found, not executable, not permitted).
    """
    identity: dict[str, object] = {}
    if run_as is not None:
        setpriv = shutil.which("setpriv")
        if setpriv is not None and _has_setpcap():
            argv = [*drop_privileges_argv(setpriv, run_as), *argv]
        else:
            identity = {"user": run_as[0], "group": run_as[1], "extra_groups": []}
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=str(cwd),
        env=dict(env),
        stdin=asyncio.subprocess.PIPE if stdin_text is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        process_group=0,
        limit=_LINE_LIMIT_BYTES,
        **identity,  # type: ignore[arg-type]  # user/group/extra_groups of Popen
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    tail: deque[bytes] = deque()
    readers = [
        asyncio.create_task(_read_lines(proc.stdout, on_line)),
        asyncio.create_task(_read_tail(proc.stderr, tail)),
    ]
    if stdin_text is not None and proc.stdin is not None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(stdin_text.encode())
            await proc.stdin.drain()
        proc.stdin.close()
    waiter = asyncio.ensure_future(proc.wait())
    stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
    timed_out = stopped = False
    try:
        watched = {waiter} if stopper is None else {waiter, stopper}
        done, _ = await asyncio.wait(
            watched, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            stopped = stopper is not None and stopper in done
            timed_out = not stopped
    except asyncio.CancelledError:
        waiter.cancel()
        await asyncio.to_thread(kill_process_tree, proc.pid, grace_s=kill_grace_s)
        raise
    finally:
        if stopper is not None:
            stopper.cancel()
    # the leader is gone (or timed out, or stopped); what it left behind goes with its group
    if timed_out or stopped or _descendants(proc.pid) or not _group_empty(proc.pid):
        await asyncio.to_thread(kill_process_tree, proc.pid, grace_s=kill_grace_s)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(waiter, timeout=kill_grace_s + 1)
    _, pending = await asyncio.wait(readers, timeout=_DRAIN_AFTER_EXIT_S)
    for task in pending:
        task.cancel()
    stderr_tail = b"".join(tail).decode("utf-8", errors="replace")[-_STDERR_TAIL_BYTES:]
    exit_code = None if timed_out or stopped else proc.returncode
    return CliOutcome(
        exit_code=exit_code, timed_out=timed_out, stderr_tail=stderr_tail, stopped=stopped
    )


def _group_empty(pgid: int) -> bool:
    """True when no process is left in the process group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _has_setpcap() -> bool:
    """True when this process holds CAP_SETPCAP in its effective set (it may shrink the
    bounding set of what it starts)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SETPCAP & 1)
    except (OSError, ValueError):
        return False
    return False


def drop_privileges_argv(setpriv: str, run_as: tuple[int, int]) -> list[str]:
    """The `setpriv` prefix that runs a program as `run_as` (uid, gid) with no supplementary
    groups, no capabilities left in any set and no-new-privileges."""
    uid, gid = run_as
    return [
        setpriv,
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]
