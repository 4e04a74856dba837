"""`orchestrator up` killed outright (SIGKILL) while an agent works on a task, then started
again, as a user would after a crash: the task completes, the agent's work is not redone, and
nothing waits out a reclaim timeout.

What makes it work: the private Redis comes back on the port of the last run, so the worker
that outlived `up` reconnects and is adopted; the new process takes over at once the commands
its dead predecessor's consumers held; the agent's answer, published once Redis is back,
reaches the flow.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support.system import ROOT, UpSystem, reap

FAKE_CLAUDE = ROOT / "tests" / "workers" / "fake_clis" / "fake_claude.py"


def _with_fake_claude(tmp_path: Path) -> tuple[UpSystem, Path]:
    """`orchestrator up` (not started) whose workers find the fake Claude CLI on PATH, and
    the log the CLI writes a line per run to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    agent_log = tmp_path / "agent-runs.jsonl"
    claude = bin_dir / "claude"
    claude.write_text(
        f'#!/bin/sh\nFAKE_CLI_LOG="{agent_log}" exec "{sys.executable}" "{FAKE_CLAUDE}" "$@"\n'
    )
    claude.chmod(0o755)
    return UpSystem(tmp_path, path_first=[bin_dir], provision_interval_s=None), agent_log


def _agent_running() -> bool:
    for process in psutil.process_iter(["cmdline"]):
        try:
            if str(FAKE_CLAUDE) in " ".join(process.info["cmdline"] or []):
                return True
        except psutil.Error:
            continue
    return False


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_task_survives_a_kill_of_the_whole_system(tmp_path: Path) -> None:
    """SIGKILL of `up` while the agent works; `up` again: the task completes with the agent's
    commit, from that one agent run."""
    up, agent_log = _with_fake_claude(tmp_path)
    try:
        up.start()
        project = up.json("project", "create", "phoenix")
        task = up.json(
            "task", "create", str(project["id"]), "--spec", "[slow:6] [commit] add a feature"
        )
        deadline = time.monotonic() + 120
        while not _agent_running():
            assert time.monotonic() < deadline, "the agent never started"
            time.sleep(0.1)
        up.kill()
        up.start()
        restarted = time.monotonic()
        watched = up.cli("task", "watch", str(task["id"]), "--timeout-s", "150", timeout_s=180)
        assert watched.returncode == 0, watched.stdout + watched.stderr
        took_s = time.monotonic() - restarted
        result = up.json("task", "show", str(task["id"]))["result"]
        assert isinstance(result, dict)
        assert result["commit_sha"]
        runs = agent_log.read_text().splitlines()
        assert len(runs) == 1, runs  # the worker that outlived `up` finished the work
        assert took_s < 60, f"{took_s:.0f} s after the restart: something waited for a timeout"
    finally:
        up.stop()
        reap(up.data_dir)
