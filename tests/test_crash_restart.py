"""`orchestrator up` killed outright (SIGKILL) while an agent works on a task, then started
again, as a user would after a crash: the task completes, the agent's work is not redone, and
nothing waits out a reclaim timeout.

What makes it work: the private Redis comes back on the port of the last run, so the worker
that outlived `up` reconnects and is adopted; the new process takes over at once the commands
its dead predecessor's consumers held; the agent's answer, published once Redis is back,
reaches the flow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from shared.redis_server import free_port
from tests.conftest import local_ports_env
from tests.telegram_bot.test_whole_system import _reap
from tests.test_quickstart import System

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
FAKE_CLAUDE = ROOT / "tests" / "workers" / "fake_clis" / "fake_claude.py"


class Up:
    """`orchestrator up` on one data directory, started and killed at will."""

    def __init__(self, tmp_path: Path) -> None:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        self.agent_log = tmp_path / "agent-runs.jsonl"  # a line per run of the agent
        claude = bin_dir / "claude"  # the coding agent the workers find on PATH
        claude.write_text(
            f'#!/bin/sh\nFAKE_CLI_LOG="{self.agent_log}" exec "{sys.executable}" '
            f'"{FAKE_CLAUDE}" "$@"\n'
        )
        claude.chmod(0o755)
        self.data_dir = tmp_path / "var"
        self.port = free_port()
        self.log_path = tmp_path / "up.log"
        self.env = {
            "PATH": f"{bin_dir}:{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/tmp"),
            "ORCHESTRATOR_DATA_DIR": str(self.data_dir),
            "ORCHESTRATOR_API__PORT": str(self.port),
            "ORCHESTRATOR_LOCAL_PORTS": local_ports_env(),
            "COLUMNS": "200",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "orchestrator"), "up"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while not (self.data_dir / "secrets" / "cli.key").exists() or not self._healthy():
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "orchestrator up did not come up in 90 s"
            time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL `up` alone: its Redis and its workers run on, as after a crash."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cli(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        """`orchestrator <args>` in a second terminal (as in the quick-start test)."""
        return System(self.data_dir, self.env).cli(*args, timeout_s=timeout_s)

    def json(self, *args: str) -> dict[str, object]:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        value: dict[str, object] = json.loads(done.stdout)
        return value

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


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
    up = Up(tmp_path)
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
        runs = up.agent_log.read_text().splitlines()
        assert len(runs) == 1, runs  # the worker that outlived `up` finished the work
        assert took_s < 60, f"{took_s:.0f} s after the restart: something waited for a timeout"
    finally:
        up.stop()
        _reap(up.data_dir)
