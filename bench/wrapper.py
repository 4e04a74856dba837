"""Benchmark of a worker's start and idle size: `python bench/wrapper.py` (or `make bench`).

The real entry point, `python -m services.worker_wrapper --worker-id ... --manager-id ...`,
as the worker-manager's local runtime starts it, with the built-in agent, on a private
redis-server started here; the wrapper's registry record is written here as the manager
would write it. About a minute and a half.

Figures:

- interpreter floor: `python -c pass` (wall and CPU, median of `--rounds`), the baseline of
  every start below;
- imports: `python -c "import services.worker_wrapper.main"` (what `bench/flow.py` reports as
  "a worker's interpreter start and imports");
- cold start: the entry point from spawn to its record saying `running` (it has read its
  settings, imported, connected and taken its input stream): wall, and the CPU the process
  used by then (user + system, from /proc); then its RSS and USS once idle;
- warm worker (`WORKER_WARM=1`, as the pool starts it): spawn to `warm`, its idle RSS and
  USS, the CPU it uses over `--idle-s` seconds of waiting (its reads block ~4.5 s each), and
  the bind: the task's environment pushed to its binding list → its record `running`;
  once without `WORKER_ADAPTER` and once with `WORKER_ADAPTER=builtin`, the adapter it is
  then bound to, as the pool starts it (imported while warm).

`--against REF` measures the same in a copy of the git revision REF (`git archive`, run
with this interpreter and virtual environment) side by side with this checkout, in the same
run: the two take turns round by round, so a change of the machine's load falls on both.
Prints machine, date and load first; writes the text and the figures (JSON) to
`bench/results/` (`shared/bench_record.py`). Bounded: every wait has a deadline; every
process started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared import bench_record  # noqa: E402
from shared.redis_server import RedisServer  # noqa: E402

WAIT_S = 30.0
"""The longest any one wait here lasts."""
POLL_S = 0.002
MANAGER_ID = "bench-wrapper"


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _memory_kib(pid: int) -> tuple[int, int]:
    info = psutil.Process(pid).memory_full_info()
    return int(info.rss // 1024), int(info.uss // 1024)


def run_once(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one process run to its end."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited with {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def floor_and_imports(tree: Path) -> dict[str, float]:
    """One run of the interpreter floor and one of the wrapper's imports."""
    floor = run_once([sys.executable, "-c", "pass"], tree)
    imports = run_once([sys.executable, "-c", "import services.worker_wrapper.main"], tree)
    return {
        "floor_wall_s": floor[0],
        "floor_cpu_s": floor[1],
        "imports_wall_s": imports[0],
        "imports_cpu_s": imports[1],
    }


class Wrappers:
    """Wrapper processes of one source tree on the bench's Redis."""

    def __init__(self, tree: Path, redis_url: str, work: Path) -> None:
        self.tree = tree
        self.redis_url = redis_url
        self.redis = redis.Redis.from_url(redis_url)
        self.work = work
        self.procs: list[subprocess.Popen[bytes]] = []

    def _env(self, worker_id: str, extra: dict[str, str]) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(self.work)),
            "WORKER_ID": worker_id,
            "WORKER_REDIS_URL": self.redis_url,
            "WORKER_REGISTRY_KEY": f"bench-worker:{worker_id}",
            "WORKER_HEARTBEAT_INTERVAL_S": "2.0",
        }
        return env | extra

    def _task_env(self, worker_id: str) -> dict[str, str]:
        workspace = self.work / worker_id
        (workspace / "session").mkdir(parents=True, exist_ok=True)
        return self._env(
            worker_id,
            {
                "WORKER_WORKSPACE": str(workspace),
                "WORKER_SESSION_DIR": str(workspace / "session"),
                "WORKER_ADAPTER": "builtin",
                "WORKER_TASK_ID": "bench-task",
            },
        )

    def spawn(self, worker_id: str, env: dict[str, str], status: str) -> subprocess.Popen[bytes]:
        """Write the record with `status`, start the entry point."""
        self.redis.hset(f"bench-worker:{worker_id}", mapping={"status": status})
        argv = [sys.executable, "-m", "services.worker_wrapper", "--worker-id", worker_id]
        proc = subprocess.Popen(
            [*argv, "--manager-id", MANAGER_ID],
            cwd=self.tree,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def wait_status(self, worker_id: str, proc: subprocess.Popen[bytes], status: str) -> None:
        """Until the record says `status`; an error when the process exits first."""
        deadline = time.monotonic() + WAIT_S
        key = f"bench-worker:{worker_id}"
        while self.redis.hget(key, "status") != status.encode():
            if proc.poll() is not None:
                raise RuntimeError(f"wrapper {worker_id} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"wrapper {worker_id} never reached {status!r}")
            time.sleep(POLL_S)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM, then SIGKILL after the deadline."""
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        """Every process started here."""
        for proc in self.procs:
            if proc.poll() is None:
                self.stop(proc)
        self.redis.close()

    def cold(self, settle_s: float) -> dict[str, float]:
        """One wrapper: spawn → `running`, with the task's environment from the start."""
        worker_id = f"cold-{uuid.uuid4().hex[:8]}"
        started = time.perf_counter()
        proc = self.spawn(worker_id, self._task_env(worker_id), "starting")
        self.wait_status(worker_id, proc, "running")
        wall = time.perf_counter() - started
        cpu = _cpu_s(proc.pid)
        time.sleep(settle_s)
        rss, uss = _memory_kib(proc.pid)
        self.stop(proc)
        return {"wall_s": wall, "cpu_s": cpu, "idle_rss_kib": rss, "idle_uss_kib": uss}

    def warm(self, settle_s: float, idle_s: float, adapter: str) -> dict[str, float]:
        """One warm wrapper: spawn → `warm`, idle size (and CPU over `idle_s`), bind →
        `running`."""
        worker_id = f"warm-{uuid.uuid4().hex[:8]}"
        extra = {"WORKER_WARM": "1", "WORKER_BIND_KEY": f"bench-bind:{worker_id}"}
        if adapter:
            extra["WORKER_ADAPTER"] = adapter
        started = time.perf_counter()
        proc = self.spawn(worker_id, self._env(worker_id, extra), "warming")
        self.wait_status(worker_id, proc, "warm")
        sample = {"to_warm_wall_s": time.perf_counter() - started, "to_warm_cpu_s": 0.0}
        sample["to_warm_cpu_s"] = _cpu_s(proc.pid)
        time.sleep(settle_s)
        if idle_s > 0:
            before = _cpu_s(proc.pid)
            time.sleep(idle_s)
            sample["idle_cpu_ms_per_s"] = (_cpu_s(proc.pid) - before) / idle_s * 1000
        sample["idle_rss_kib"], sample["idle_uss_kib"] = _memory_kib(proc.pid)
        self.redis.hset(f"bench-worker:{worker_id}", "status", "starting")
        started = time.perf_counter()
        self.redis.rpush(f"bench-bind:{worker_id}", json.dumps(self._task_env(worker_id)))
        self.wait_status(worker_id, proc, "running")
        sample["bind_s"] = time.perf_counter() - started
        self.stop(proc)
        return sample


def medians(samples: list[dict[str, float]]) -> dict[str, float]:
    """The median of each figure over the samples (those that have it)."""
    names = {name for sample in samples for name in sample}
    return {
        name: _median([sample[name] for sample in samples if name in sample])
        for name in sorted(names)
    }


@contextlib.contextmanager
def source_tree(ref: str | None) -> Iterator[Path]:
    """A copy of revision `ref` (`git archive`); this checkout when there is none."""
    if ref is None:
        yield ROOT
        return
    with tempfile.TemporaryDirectory(prefix="bench-wrapper-src-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", ref],
            check=True,
            capture_output=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)


def measure(
    trees: dict[str, Path], redis_url: str, options: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Every figure of each source tree, the trees taking turns round by round (so that a
    change of the machine's load falls on each alike)."""
    samples: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {"floor": [], "cold": [], "warm": [], "warm_preloaded": []} for name in trees
    }
    with tempfile.TemporaryDirectory(prefix="bench-wrapper-") as work:
        wrappers = {
            name: Wrappers(tree, redis_url, Path(work) / str(index))
            for index, (name, tree) in enumerate(trees.items())
        }
        try:
            for each in wrappers.values():
                each.cold(0.0)  # compiled and in the page cache before the timed rounds
            for _ in range(options.rounds):
                for name, each in wrappers.items():
                    samples[name]["floor"].append(floor_and_imports(each.tree))
                    samples[name]["cold"].append(each.cold(options.settle_s))
            for index in range(options.warm_rounds):
                idle_s = options.idle_s if index == 0 else 0.0
                for name, each in wrappers.items():
                    samples[name]["warm"].append(each.warm(options.settle_s, idle_s, ""))
                    preloaded = each.warm(options.settle_s, 0.0, "builtin")
                    samples[name]["warm_preloaded"].append(preloaded)
        finally:
            for each in wrappers.values():
                each.stop_all()
    runs: dict[str, dict[str, Any]] = {}
    for name, kinds in samples.items():
        cold = medians(kinds["cold"])
        cold["cpu_min_s"] = min(sample["cpu_s"] for sample in kinds["cold"])
        runs[name] = {
            **medians(kinds["floor"]),
            "cold": cold,
            "warm": medians(kinds["warm"]) | {"adapter": None},
            "warm_preloaded": medians(kinds["warm_preloaded"]) | {"adapter": "builtin"},
        }
    return runs


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def report(runs: dict[str, dict[str, Any]]) -> None:
    """Print the figures of each source tree."""
    for name, f in runs.items():
        cold, warm, preloaded = f["cold"], f["warm"], f["warm_preloaded"]
        idle = warm.get("idle_cpu_ms_per_s")
        print(f"== {name}")
        print(
            f"interpreter floor (python -c pass): {f['floor_wall_s'] * 1000:.0f} ms wall, "
            f"{f['floor_cpu_s'] * 1000:.0f} ms CPU; imports (import "
            f"services.worker_wrapper.main): {f['imports_wall_s'] * 1000:.0f} ms wall, "
            f"{f['imports_cpu_s'] * 1000:.0f} ms CPU"
        )
        print(
            f"cold start (entry point → running): {cold['wall_s'] * 1000:.0f} ms wall, "
            f"{cold['cpu_s'] * 1000:.0f} ms CPU (min {cold['cpu_min_s'] * 1000:.0f}); "
            f"idle RSS {_mib(cold['idle_rss_kib'])}, USS {_mib(cold['idle_uss_kib'])}"
        )
        print(
            f"warm worker: spawn → warm {warm['to_warm_wall_s'] * 1000:.0f} ms wall, "
            f"{warm['to_warm_cpu_s'] * 1000:.0f} ms CPU; idle RSS {_mib(warm['idle_rss_kib'])}, "
            f"USS {_mib(warm['idle_uss_kib'])}; idle CPU "
            f"{'-' if idle is None else f'{idle:.2f}'} ms/s; bind → running "
            f"{warm['bind_s'] * 1000:.0f} ms"
        )
        print(
            f"warm worker, WORKER_ADAPTER=builtin (preloaded, as the pool starts it): idle RSS "
            f"{_mib(preloaded['idle_rss_kib'])}, USS {_mib(preloaded['idle_uss_kib'])}; "
            f"bind → running {preloaded['bind_s'] * 1000:.0f} ms"
        )
    if len(runs) == 2:
        (new_name, new), (old_name, old) = runs.items()
        print(
            f"{new_name} vs {old_name}: cold start CPU "
            f"{old['cold']['cpu_s'] * 1000:.0f} → {new['cold']['cpu_s'] * 1000:.0f} ms, "
            f"idle warm USS {_mib(old['warm']['idle_uss_kib'])} → "
            f"{_mib(new['warm']['idle_uss_kib'])}, RSS {_mib(old['warm']['idle_rss_kib'])} → "
            f"{_mib(new['warm']['idle_rss_kib'])}"
        )


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="cold starts (and floor runs)")
    parser.add_argument("--warm-rounds", type=int, default=4, help="warm workers per kind")
    parser.add_argument("--settle-s", type=float, default=1.0, help="idle before reading memory")
    parser.add_argument("--idle-s", type=float, default=9.0, help="idle CPU window, warm worker")
    parser.add_argument("--against", metavar="REF", help="also measure git revision REF")
    parser.add_argument("--quick", action="store_true", help="a smoke run (seconds)")
    parser.add_argument("--json", dest="as_json", action="store_true", help="print JSON")
    options = parser.parse_args(argv)
    if options.quick:
        options.rounds, options.warm_rounds, options.settle_s, options.idle_s = 2, 1, 0.2, 0.0
    return options


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    options = parse(argv)
    # SIGTERM (a timeout's) stops the run like Ctrl-C: every wrapper started here is stopped
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    run_context = bench_record.context()
    started = time.perf_counter()
    with RedisServer() as server, source_tree(options.against) as other:
        trees = {"this checkout": ROOT}
        if options.against:
            trees[options.against] = other
        runs = measure(trees, server.url, options)
    elapsed_s = time.perf_counter() - started
    load_after = [round(x, 2) for x in os.getloadavg()]
    figures: dict[str, Any] = {
        "context": run_context,
        "elapsed_s": elapsed_s,
        "load_average_after": load_after,
        "runs": runs,
    }
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        print(bench_record.context_line(run_context))
        print(
            f"worker wrapper start and idle size, built-in agent, private redis-server; "
            f"{elapsed_s:.0f} s; load average after: " + " ".join(f"{x:.1f}" for x in load_after)
        )
        report(runs)
    saved = bench_record.save("wrapper", text.getvalue(), figures)
    if options.as_json:
        print(json.dumps(figures, indent=2))
    else:
        print(text.getvalue(), end="")
        print(f"(figures in {saved})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
