"""Warm workers' CPU priority (`cpu_priority.py`): the lowest while warm, the manager's once
claimed. Setting a priority back needs root here (or RLIMIT_NICE): those tests skip without."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.worker_manager import cpu_priority

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="giving a lowered priority back needs root (or RLIMIT_NICE)"
)


def _sleeper(*, own_session: bool) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=own_session
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process leading its own session (as the local runtime starts wrappers)."""
    yield from _sleeper(own_session=True)


@pytest.fixture
def session_child() -> Iterator[subprocess.Popen[bytes]]:
    """A process of the test's own session."""
    yield from _sleeper(own_session=False)


@pytest.fixture
def ended_pid() -> int:
    """The pid of a process that ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_pid_of_a_local_reference() -> None:
    """`pid:create_time:worker_id` → pid; a container id → None."""
    assert cpu_priority.pid_of_ref("4242:1733300000.5:warm-abc") == 4242
    assert cpu_priority.pid_of_ref("f00dfeed") is None
    assert cpu_priority.pid_of_ref("") is None


async def test_a_gone_process_is_no_error(ended_pid: int) -> None:
    """Lowering or restoring a process that ended does nothing and raises nothing."""
    assert not await cpu_priority.lower(ended_pid)
    assert await cpu_priority.restore(ended_pid)  # nothing left to give back
    assert cpu_priority.thread_nices(ended_pid) == {}


@needs_root
async def test_lower_then_restore(sleeper: subprocess.Popen[bytes]) -> None:
    """Lowered: every thread at nice 19, and its own autogroup too where autogroups apply;
    restored: the manager's priority on both."""
    normal = os.getpriority(os.PRIO_PROCESS, 0)
    assert await cpu_priority.lower(sleeper.pid)
    assert set(cpu_priority.thread_nices(sleeper.pid).values()) == {cpu_priority.IDLE_NICE}
    grouped = cpu_priority.uses_autogroup(sleeper.pid)
    if grouped:
        assert cpu_priority.autogroup_nice(sleeper.pid) == cpu_priority.IDLE_NICE
        assert cpu_priority.autogroup_nice() != cpu_priority.IDLE_NICE  # not the manager's
    assert await cpu_priority.restore(sleeper.pid)
    assert set(cpu_priority.thread_nices(sleeper.pid).values()) == {normal}
    if grouped:
        assert cpu_priority.autogroup_nice(sleeper.pid) == cpu_priority.normal_autogroup_nice()


async def test_a_process_of_the_managers_session_keeps_the_managers_autogroup(
    session_child: subprocess.Popen[bytes],
) -> None:
    """A process that does not lead its own session shares the manager's autogroup: that
    knob is never turned for it (it would lower the manager too)."""
    assert not cpu_priority.uses_autogroup(session_child.pid)
    before = cpu_priority.autogroup_nice()
    await cpu_priority.lower(session_child.pid)
    assert cpu_priority.autogroup_nice() == before
    await cpu_priority.restore(session_child.pid)


async def test_a_restore_refused_for_a_while_looks_again_soon(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernel refuses an unprivileged autogroup change within 100 ms of another (EAGAIN,
    machine-wide): a restore looks again every 20 ms (a claim waits about one window, not
    a lower's 110 ms retries), a lower every 110 ms; both give up after their retries."""
    calls: list[tuple[str, int]] = []
    refusals = {"left": 3}

    def refuse_then_set(pid: int, nice: int) -> bool:
        calls.append(("set", nice))
        if refusals["left"] > 0:
            refusals["left"] -= 1
            raise OSError(errno.EAGAIN, "busy")
        return True

    slept: list[float] = []

    async def no_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(cpu_priority, "_set_autogroup", refuse_then_set)
    monkeypatch.setattr("services.worker_manager.cpu_priority.asyncio.sleep", no_sleep)
    monkeypatch.setattr(cpu_priority, "uses_autogroup", lambda pid: True)
    monkeypatch.setattr(
        cpu_priority, "autogroup_nice", lambda pid="self": 19 if pid != "self" else 0
    )
    monkeypatch.setattr(cpu_priority, "thread_nices", lambda pid: {})
    assert await cpu_priority.restore(4242)
    assert slept == [0.02, 0.02, 0.02]
    assert calls == [("set", 0)] * 4

    slept.clear()
    refusals["left"] = 100  # never allowed: a lower gives up after its 5 tries
    monkeypatch.setattr(cpu_priority, "can_restore_nice", lambda normal: False)
    assert not await cpu_priority.lower(4242)
    assert slept == [0.11] * 4


async def test_a_manager_in_the_root_autogroup_gives_back_nice_0(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A manager that never led a session (a child of init's, as CI starts it) is in the
    root autogroup: its `/proc/self/autogroup` is empty. A claimed worker's autogroup gets
    nice 0 back, the root group's, not the lowest."""
    proc = tmp_path
    (proc / "self").mkdir()
    (proc / "self" / "autogroup").write_text("")
    (proc / "4242").mkdir()
    (proc / "4242" / "autogroup").write_text("/autogroup-77 nice 19\n")
    monkeypatch.setattr(cpu_priority, "_PROC", proc)
    assert cpu_priority.autogroup_nice() is None
    assert cpu_priority.autogroup_nice(4242) == cpu_priority.IDLE_NICE
    assert cpu_priority.normal_autogroup_nice() == 0

    set_to: list[tuple[int, int]] = []

    def record(pid: int, nice: int) -> bool:
        set_to.append((pid, nice))
        return True

    monkeypatch.setattr(cpu_priority, "_set_autogroup", record)
    monkeypatch.setattr(cpu_priority, "uses_autogroup", lambda pid: True)
    monkeypatch.setattr(cpu_priority, "thread_nices", lambda pid: {})
    assert await cpu_priority.restore(4242)
    assert set_to == [(4242, 0)]
