"""`bench/wrapper.py` runs end to end (the figures themselves are the benchmark's business,
not a test's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wrapper_benchmark_prints_and_saves_every_figure() -> None:
    """A smoke run: machine and load first, each figure printed, the JSON saved."""
    done = subprocess.run(
        [sys.executable, "bench/wrapper.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "load average before" in lines[0], lines[0]
    for words in ("interpreter floor", "cold start", "warm worker:", "bind → running"):
        assert any(words in line for line in lines), (words, done.stdout)
    saved = Path(lines[-1].removeprefix("(figures in ").removesuffix(")"))
    figures = json.loads(saved.read_text())
    run = figures["runs"]["this checkout"]
    assert run["cold"]["cpu_s"] > 0
    assert run["cold"]["idle_uss_kib"] > 0
    assert run["warm"]["bind_s"] > 0
    assert run["warm_preloaded"]["adapter"] == "builtin"
