"""The `orchestrator` command line, run as a user runs it (a real subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shared import registry
from shared.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `orchestrator` console script."""
    return subprocess.run(
        [str(ORCHESTRATOR), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "250"},
        check=False,
    )


def test_help_lists_the_commands() -> None:
    """`orchestrator --help` exits 0 and lists its command groups."""
    done = run("--help")
    assert done.returncode == 0, done.stderr
    for command in ("queues", "contracts"):
        assert command in done.stdout


def test_queues_prints_every_registered_queue() -> None:
    """`orchestrator queues` prints a row for every queue of the registry."""
    done = run("queues")
    assert done.returncode == 0, done.stderr
    for spec in registry.QUEUES:
        assert spec.name in done.stdout


def test_up_on_a_data_dir_whose_redis_runs_is_refused(tmp_path: Path) -> None:
    """A second `orchestrator up` on a data directory whose private Redis still runs ends at
    once with exit code 1 and the reason, and leaves the running server alone."""
    running = RedisServer(data_dir=tmp_path / "redis", appendonly=True).start()
    try:
        done = run("up", "--data-dir", str(tmp_path))
        assert done.returncode == 1, done.stdout + done.stderr
        assert "in use by a running server" in done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        assert running.process is not None
        assert running.process.poll() is None
    finally:
        running.cleanup()
