"""CPU priority of warm workers: the lowest while they start and wait, the manager's once claimed.

A warm wrapper of the local runtime imports and connects before any task asks for it: work
that must not slow the workers serving tasks on the same cores (a burst's creates, the
agents). `lower` gives it the lowest priority, `restore` gives it back when a create claims
it, before its task starts (its agent, started afterwards, inherits the restored priority).

Two knobs, both used where they work:
- the nice of the process's *autogroup* (`/proc/<pid>/autogroup`), when the kernel groups
  processes by session (`kernel.sched_autogroup_enabled`) and the wrapper leads a session
  of its own (the local runtime starts it with `setsid`): the scheduler shares the CPU
  between autogroups first, so a process's own nice alone would only weigh it against the
  other processes of its group. Any user may set a nice of 0 or more there (the kernel
  refuses one change per 100 ms to unprivileged callers: retried);
- the nice of each of its threads (`setpriority`), which is what counts when autogroups do
  not apply (disabled, or the process in a cgroup of its own, as in a container). Giving it
  back needs privilege (root, CAP_SYS_NICE or RLIMIT_NICE): without it this knob is left
  alone, so that no claimed worker keeps the lowest priority.
Everything here is best effort: a failure is logged and the worker runs at its priority.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
from pathlib import Path

import structlog

__all__ = [
    "IDLE_NICE",
    "autogroup_nice",
    "can_restore_nice",
    "lower",
    "normal_autogroup_nice",
    "pid_of_ref",
    "restore",
    "thread_nices",
    "uses_autogroup",
]

log = structlog.get_logger("services.worker_manager")

IDLE_NICE = 19
"""The lowest priority."""
_PROC = Path("/proc")
_AUTOGROUP_SWITCH = _PROC / "sys/kernel/sched_autogroup_enabled"
_RETRIES = 5
_RETRY_S = 0.11
"""A lower's retries on EAGAIN (in the background: it waits a whole window each time)."""
_RESTORE_RETRIES = 30
_RESTORE_RETRY_S = 0.02
"""A restore's (on a create's path): it looks every 20 ms for the end of the window (100 ms
after the machine's last unprivileged change), ahead of the lowers' 110 ms retries, so a
claim waits for at most about one window, not behind the refills' lowers."""


def pid_of_ref(ref: str) -> int | None:
    """The pid of a local runtime's reference (`pid:create_time:worker_id`), else None."""
    head = ref.split(":", 1)[0]
    return int(head) if head.isdigit() else None


def autogroup_nice(pid: int | str = "self") -> int | None:
    """The nice of a process's autogroup (`/autogroup-12 nice 0`), None when unknown."""
    try:
        text = (_PROC / str(pid) / "autogroup").read_text()
    except OSError:
        return None
    parts = text.split()
    if len(parts) == 3 and parts[1] == "nice":
        with contextlib.suppress(ValueError):
            return int(parts[2])
    return None


def uses_autogroup(pid: int) -> bool:
    """True when autogroups are on and the process leads its own session (so its autogroup
    is its own, never the manager's)."""
    try:
        enabled = _AUTOGROUP_SWITCH.read_text().strip() == "1"
        return enabled and os.getsid(pid) == pid
    except OSError:
        return False


def thread_nices(pid: int) -> dict[int, int]:
    """The nice of each thread of a process (empty when it is gone)."""
    nices: dict[int, int] = {}
    try:
        tids = [int(name) for name in os.listdir(_PROC / str(pid) / "task")]
    except OSError:
        return nices
    for tid in tids:
        with contextlib.suppress(OSError):
            nices[tid] = os.getpriority(os.PRIO_PROCESS, tid)
    return nices


def can_restore_nice(normal: int) -> bool:
    """True when this process may set a nice as low as `normal` again (root, or RLIMIT_NICE
    allowing it; CAP_SYS_NICE alone is not looked for)."""
    if os.geteuid() == 0:
        return True
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    return soft == resource.RLIM_INFINITY or 20 - soft <= normal


def _normal_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)


def normal_autogroup_nice() -> int:
    """The autogroup nice a claimed worker gets back: the manager's own. A manager in the
    root autogroup (one that never led a session, such as a child of init's: its
    `/proc/self/autogroup` is empty) counts as nice 0, the root group's weight."""
    own = autogroup_nice() or 0
    return own if own >= 0 or os.geteuid() == 0 else 0


def _set_autogroup(pid: int, nice: int) -> bool:
    try:
        (_PROC / str(pid) / "autogroup").write_text(str(nice))
    except OSError as exc:
        if exc.errno == errno.EAGAIN:  # an unprivileged change within 100 ms of another
            raise
        log.info("cpu_priority_not_set", pid=pid, knob="autogroup", error=str(exc))
        return False
    return True


def _set_threads(pid: int, nice: int, only_above: int | None = None) -> bool:
    done = False
    for tid, current in thread_nices(pid).items():
        if only_above is not None and current <= only_above:
            continue
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
            done = True
        except OSError as exc:
            log.info("cpu_priority_not_set", pid=pid, tid=tid, knob="nice", error=str(exc))
    return done


async def _with_retries(
    pid: int, nice: int, *, retries: int = _RETRIES, every_s: float = _RETRY_S
) -> bool:
    for attempt in range(retries):
        try:
            return _set_autogroup(pid, nice)
        except OSError:
            if attempt + 1 < retries:
                await asyncio.sleep(every_s)
    log.info("cpu_priority_not_set", pid=pid, knob="autogroup", error="busy (EAGAIN)")
    return False


async def lower(pid: int) -> bool:
    """Give a process the lowest CPU priority, with every knob that `restore` can turn back;
    True when one was turned."""
    done = False
    if uses_autogroup(pid):
        done = await _with_retries(pid, IDLE_NICE)
    if can_restore_nice(_normal_nice()):
        done = _set_threads(pid, IDLE_NICE) or done
    return done


async def restore(pid: int) -> bool:
    """Give a process the manager's CPU priority back (what `lower` took); True when it has
    it (or never lost it)."""
    ok = True
    if uses_autogroup(pid):
        normal = normal_autogroup_nice()
        current = autogroup_nice(pid)
        if current is not None and current != normal:
            ok = await _with_retries(
                pid, normal, retries=_RESTORE_RETRIES, every_s=_RESTORE_RETRY_S
            )
    normal = _normal_nice()
    if any(nice > normal for nice in thread_nices(pid).values()):
        if can_restore_nice(normal):
            _set_threads(pid, normal, only_above=normal)
        ok = not any(nice > normal for nice in thread_nices(pid).values()) and ok
    return ok
