"""`kill_process_tree`: nothing the agent's tree started survives, not even what it
started after the SIGTERM in a session of its own."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from services.worker_wrapper.agents.process import kill_process_tree
from tests.workers.helpers import processes_with


def _leader(script: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["bash", "-c", script], process_group=0)


def test_a_command_started_in_its_own_session_during_the_grace_is_killed(tmp_path: Path) -> None:
    """As a CLI that answers the SIGTERM by going on: it runs a tool's command (in a new
    session, out of the group's reach) while the grace lasts. The command never finishes."""
    marker = f"late-{os.getpid()}-{time.monotonic_ns()}"
    late, ready = tmp_path / "late.txt", tmp_path / "ready"
    leader = _leader(
        f"trap 'setsid bash -c \"sleep 1.5; : {marker}; touch {late}\" &' TERM; "
        f"touch {ready}; while :; do sleep 0.05; done"
    )
    try:
        deadline = time.monotonic() + 10
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        kill_process_tree(leader.pid, grace_s=0.6)
        took = time.monotonic() - started
        assert leader.wait(timeout=5) is not None
        time.sleep(max(0.0, 2.0 - took))
        assert processes_with(marker) == []
        assert not late.exists()
    finally:
        leader.kill()
        leader.wait()


def test_a_tree_started_before_the_sigterm_goes_in_its_own_session_too(tmp_path: Path) -> None:
    """A descendant that left the group before the SIGTERM and ignores it is killed at the end
    of the grace; the group's own processes go with the SIGTERM."""
    marker = f"stray-{os.getpid()}-{time.monotonic_ns()}"
    ready = tmp_path / "ready"
    leader = _leader(
        f"setsid bash -c \"trap '' TERM; touch {ready}; sleep 60; : {marker}\" & "
        "while :; do sleep 0.05; done"
    )
    try:
        deadline = time.monotonic() + 10
        while not (ready.exists() and processes_with(marker)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert processes_with(marker)
        started = time.monotonic()
        kill_process_tree(leader.pid, grace_s=0.5)
        assert time.monotonic() - started < 3
        assert leader.wait(timeout=5) is not None
        assert processes_with(marker) == []
    finally:
        leader.kill()
        leader.wait()
