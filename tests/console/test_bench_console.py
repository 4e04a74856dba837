"""`bench/console.py` runs end to end: a row per page, and its machine line and figures
kept as JSON (the figures themselves are the benchmark's business, not a test's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_the_console_benchmark_prints_every_page_and_keeps_its_figures() -> None:
    done = subprocess.run(
        [sys.executable, "bench/console.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "load average before" in lines[0], lines[0]
    for page in ("/health (floor)", "project list", "project page", "task page"):
        assert any(line.startswith(page) for line in lines), done.stdout
    saved = Path(lines[-1].removeprefix("(figures in ").removesuffix(")"))
    figures = json.loads(saved.read_text())
    assert set(figures["pages"]) == {line[:44].rstrip() for line in lines[3:7]}
    assert all(page["p50_ms"] > 0 for page in figures["pages"].values())
