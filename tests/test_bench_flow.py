"""`bench/flow.py` runs against the real system and leaves nothing behind.

The benchmark's figures are not asserted (speed is the benchmark's business, not a test's);
what is asserted: every task completed, the figures are coherent, every flow parked at
`create_worker`, and no process the run started is still alive afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench(*args: str, tmp: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run the bench; past `timeout_s` it gets SIGTERM, so it stops what it started (a
    SIGKILL would leave its actors running), and the test fails with its output."""
    argv = [sys.executable, "bench/flow.py", *args]
    with subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.terminate()
            stdout, stderr = process.communicate(timeout=120)
            pytest.fail(f"the bench ran over {timeout_s:.0f} s; stopped:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def _started_under(tmp: Path) -> list[str]:
    """Processes whose environment points TMPDIR at `tmp`: what the run started (workers
    keep TMPDIR, it is on their allowlist)."""
    found = []
    for process in psutil.process_iter(["pid", "name"]):
        with contextlib.suppress(psutil.Error):
            if process.environ().get("TMPDIR") == str(tmp):
                found.append(f"{process.info['pid']} {process.info['name']}")
    return found


@pytest.mark.slow
@pytest.mark.timeout(720)  # the project's checks run 8 times: minutes on a loaded machine
def test_quick_run_completes_every_task_and_cleans_up(tmp_path: Path) -> None:
    """A tiny run: the tasks complete with the pool off and on (one at a time, a burst over
    two projects, two at once in one project), the flows park, nothing is left running."""
    done = _bench(
        "--quick", "--tasks", "2", "--repeat", "1", "--waiting", "5", "--pool", "1",
        "--projects", "2", "--heavy", "2", "--json",
        tmp=tmp_path, timeout_s=560,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    assert figures["single"]["tasks"] == 1
    assert figures["concurrent"]["tasks"] == 2
    for phase in ("single", "concurrent"):
        row = figures[phase]
        assert 0 < row["agent_p50_s"] < row["e2e_p50_s"]
        assert row["overhead_p50_s"] > 0
        assert row["overhead_p95_s"] >= row["overhead_p50_s"]
    for phase in ("pool_off", "pool_on"):
        assert figures[phase]["single"]["tasks"] == 1
        assert figures[phase]["concurrent"]["tasks"] == 2
        assert figures[phase]["redis_commands_per_task"] > 0
        requests = figures[phase]["api_requests_per_task"]
        assert requests["POST"] >= 1  # the task's creation at least
        assert requests["GET"] > 0
        cpu = figures[phase]["actor_cpu_ms_per_task"]
        assert set(cpu) == {"api", "scaffolder", "worker-manager", "langgraph"}
        assert cpu["langgraph"] > 0
        for row in (figures[phase]["single"], figures[phase]["concurrent"]):
            # the scaffolded project's checks ran, and count as its work, not as overhead
            assert row["checks_p50_s"] > 0
            assert row["e2e_p50_s"] > row["agent_p50_s"] + row["checks_p50_s"]
    heavy = figures["pool_on"]["heavy"]
    assert heavy["tasks"] == 2
    assert heavy["checks_p50_s"] > 0
    assert heavy["overhead_p50_s"] > 0
    assert figures["options"]["projects"] == 2
    for phase in ("pool_off", "pool_on"):  # the burst's check is cheaper than `make test`
        burst = figures[phase]["concurrent"]["checks_p50_s"]
        assert burst < figures[phase]["single"]["checks_p50_s"]
    pool = figures["pool"]
    assert pool["size"] == pool["wanted"] == 1
    assert 0 < pool["worker_uss_kib"] <= pool["worker_rss_kib"]
    assert figures["context"]["cpus"] == os.cpu_count()
    assert figures["bus_hop_ms"] > 0
    assert figures["by_hand_agent_s"] > 0
    assert 0 < figures["by_hand_checks_s"] < figures["by_hand_s"]
    memory = figures["memory"]
    assert memory["waiting"] == memory["wanted"] == 5
    assert memory["waiting_at"] == ["create_worker"]
    assert memory["rss_waiting_kib"] > 0
    assert _started_under(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_count_below_one(tmp_path: Path) -> None:
    """A count of 0 is refused before anything starts."""
    done = _bench("--tasks", "0", tmp=tmp_path, timeout_s=60)
    assert done.returncode == 2
    assert "must be at least 1" in done.stderr
    done = _bench("--projects", "0", tmp=tmp_path, timeout_s=60)
    assert done.returncode == 2
    assert "must be at least 1" in done.stderr
    assert list(tmp_path.iterdir()) == []
