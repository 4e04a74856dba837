"""What every benchmark (`bench/*.py`) prints first and keeps: machine, date, load, figures.

`context()` describes the run (host, CPU model and count, memory, Python, UTC date, load
average before the run); `save(name, text, figures)` writes the printed text and the figures
as JSON to `bench/results/` (ignored by git), as `<name>-<UTC stamp>.{txt,json}` plus
`<name>-latest.{txt,json}`, so that runs can be compared.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import socket
from pathlib import Path
from typing import Any

import psutil

__all__ = ["RESULTS", "context", "context_line", "save"]

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def context() -> dict[str, Any]:
    """The machine and the moment of a run."""
    return {
        "host": socket.gethostname(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def context_line(info: dict[str, Any]) -> str:
    """`context()` as one printable line."""
    load = " ".join(f"{x:.1f}" for x in info["load_average"])
    return (
        f"{info['date']} on {info['host']}: {info['cpus']} x {info['cpu']}, "
        f"{info['memory_gib']} GiB, Python {info['python']}; load average before: {load}"
    )


def save(name: str, text: str, figures: dict[str, Any]) -> Path:
    """Write the run's text and figures; answer the JSON file's path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    payload = json.dumps(figures, indent=2, default=str)
    for suffix in (stamp, "latest"):
        (RESULTS / f"{name}-{suffix}.txt").write_text(text, encoding="utf-8")
        (RESULTS / f"{name}-{suffix}.json").write_text(payload, encoding="utf-8")
    return RESULTS / f"{name}-{stamp}.json"
