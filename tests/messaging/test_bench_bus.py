"""`bench/bus.py` runs end to end and prints its table and issue 3's targets (the figures
themselves are the benchmark's business, not a test's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_bus_benchmark_prints_every_cell_and_the_targets() -> None:
    """A short run of every scenario and runtime: a row per cell, a verdict per target."""
    done = subprocess.run(
        [sys.executable, "bench/bus.py", "--rounds", "1", "--budget-s", "0.3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for scenario in ("batch 1", "batch 100", "1000/s"):
        for runtime in ("ours", "plain", "faststream"):
            cell = [*scenario.split(), runtime]
            assert any(line.split()[: len(cell)] == cell for line in lines), (
                scenario,
                runtime,
                done.stdout,
            )
    verdicts = [line for line in lines if line.startswith("target ")]
    assert len(verdicts) == 4, done.stdout
    assert all(line.endswith(("met", "NOT MET")) for line in verdicts)
    assert "load average before" in lines[0], lines[0]
    saved = Path(lines[-1].removeprefix("(figures in ").removesuffix(")"))
    figures = json.loads(saved.read_text())
    assert figures["context"]["cpus"] >= 1
    assert len(figures["cells"]) == 9
    assert len(figures["targets"]) == 4


def test_the_bus_benchmark_refuses_an_unknown_scenario() -> None:
    """A misspelt scenario is an error with the usage, not a silent empty run."""
    done = subprocess.run(
        [sys.executable, "bench/bus.py", "--scenarios", "batch7"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown runtime or scenario: batch7" in done.stderr
