"""Stopping a local worker process: its exit is noticed when it happens (not at the end of the
grace), its exit status is kept, and one that ignores SIGTERM is killed after the grace."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
from pathlib import Path

import pytest

from services.worker_manager.local_runtime import LocalProcessRuntime
from services.worker_manager.runtime import WorkerSpec
from tests.support.waiting import eventually
from tests.workers.helpers import exists

LONG_GRACE_S = 60.0
"""Far longer than the test may take (its timeout is 120 s)."""


def _runtime(tmp_path: Path, script: str) -> LocalProcessRuntime:
    """A runtime whose "interpreter" is a shell script standing in for the wrapper."""
    fake = tmp_path / "fake-python"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    return LocalProcessRuntime(tmp_path / "workers", python=str(fake))


def _spec(tmp_path: Path) -> WorkerSpec:
    worker_dir = tmp_path / "workers" / "w1"
    return WorkerSpec(
        worker_id="w1",
        manager_id="m1",
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        worker_dir=worker_dir,
        workspace=worker_dir / "workspace",
        session_dir=worker_dir / "session",
    )


async def _appears(path: Path, timeout_s: float = 30.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if exists(path):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} did not appear in {timeout_s:g} s")


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polling"])
async def test_a_worker_that_exits_on_sigterm_is_noticed_before_the_grace_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pidfd: bool
) -> None:
    """stop() with a 60 s grace returns once the process exited, with its exit status."""
    if not pidfd:

        def no_pidfd(_pid: int, _flags: int = 0) -> int:
            raise OSError(errno.ENODEV, "no pidfd here")

        monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    runtime = _runtime(tmp_path, "exec sleep 100")
    ref = await runtime.start(_spec(tmp_path))
    assert await runtime.is_alive(ref)
    stopping = asyncio.create_task(runtime.stop(ref, grace_s=LONG_GRACE_S))
    done, _ = await asyncio.wait({stopping}, timeout=LONG_GRACE_S / 2)
    assert stopping in done, "stop() waited out the grace of a process that had exited"
    stopping.result()
    assert not await runtime.is_alive(ref)
    ended = await runtime.exit_info(ref)
    assert ended.exit_code == -15
    assert "killed by signal 15" in ended.detail


async def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    """A process deaf to SIGTERM is SIGKILLed once the grace ran out."""
    ready = tmp_path / "deaf"
    runtime = _runtime(tmp_path, f"trap '' TERM\ntouch {ready}\nexec sleep 100")
    ref = await runtime.start(_spec(tmp_path))
    await _appears(ready)  # a SIGTERM before the trap would simply end the shell
    await asyncio.wait_for(runtime.stop(ref, grace_s=0.3), timeout=30)
    assert not await runtime.is_alive(ref)
    assert (await runtime.exit_info(ref)).exit_code == -9


async def test_two_systems_with_one_manager_id_own_only_their_own_workers(tmp_path: Path) -> None:
    """Two managers on one machine keep the default manager id (a user's system and a test
    run, say): each finds only the wrappers under its own data directory, so neither adopts
    nor stops the other's at start."""
    ours = _runtime(tmp_path, "sleep 100")  # not exec: the wrapper's argv stays in the table
    theirs = LocalProcessRuntime(tmp_path / "elsewhere" / "workers", python=ours.python)
    ref = await ours.start(_spec(tmp_path))
    try:

        async def listed() -> bool:  # its argv is in the table once it has exec'd
            return await ours.list_owned("m1") == {"w1": ref}

        await eventually(listed, timeout_s=10, what="the wrapper in the process table")
        assert await theirs.list_owned("m1") == {}
        assert await ours.list_owned("another-manager") == {}
    finally:
        await ours.stop(ref, grace_s=0)
    assert await ours.list_owned("m1") == {}


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polling"])
async def test_wait_exit_returns_at_the_exit_and_not_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pidfd: bool
) -> None:
    """wait_exit answers False while the process runs (after its timeout) and True as soon as
    it exits: with a pidfd at once whatever `poll_s`, without one within `poll_s`."""
    if not pidfd:

        def no_pidfd(_pid: int, _flags: int = 0) -> int:
            raise OSError(errno.ENODEV, "no pidfd here")

        monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    runtime = _runtime(tmp_path, "exec sleep 100")
    ref = await runtime.start(_spec(tmp_path))
    poll_s = LONG_GRACE_S if pidfd else 0.05
    assert not await runtime.wait_exit(ref, timeout_s=0.2, poll_s=poll_s)
    waiting = asyncio.create_task(runtime.wait_exit(ref, timeout_s=LONG_GRACE_S, poll_s=poll_s))
    await asyncio.sleep(0.1)
    os.kill(int(ref.split(":", 1)[0]), signal.SIGKILL)
    assert await asyncio.wait_for(waiting, timeout=5)
    assert await runtime.wait_exit(ref, timeout_s=LONG_GRACE_S, poll_s=poll_s)
    assert (await runtime.exit_info(ref)).exit_code == -9
