"""`bench/docker_workers.py` runs end to end on the tests' engine: its machine line first, a
row per figure with a column per run (local and Docker, pool off and on), and its figures
kept as JSON (the figures themselves are the benchmark's business, not a test's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docker_engine import Engine

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]


def test_the_docker_workers_benchmark_prints_and_keeps_its_figures(
    docker_engine: Engine, worker_image: str
) -> None:
    done = subprocess.run(
        [sys.executable, "bench/docker_workers.py", "--count", "1"],
        cwd=ROOT,
        env={**os.environ, "DOCKER_HOST": docker_engine.base_url},
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "load average before" in lines[0], lines[0]
    header = lines[2].split()
    assert header == ["local", "local+pool", "docker", "docker+pool"], lines[2]
    for figure in ("create (s)", "create_cpu (ms)", "refill (s)", "warm_memory (MB)"):
        assert any(line.startswith(figure) for line in lines), done.stdout
    assert "docker: create with the pool" in done.stdout
    saved = Path(lines[-1].removeprefix("(figures in ").removesuffix(")"))
    figures = json.loads(saved.read_text())
    assert figures["context"]["load_average"]
    medians = figures["medians"]
    assert set(medians) == set(header)
    assert all(medians[run]["create"] > 0 for run in header)
    assert medians["docker+pool"]["refill"] > 0
    assert medians["docker"]["refill"] is None
