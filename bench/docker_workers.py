"""Benchmark of Docker workers against local-process workers: `python bench/docker_workers.py`.

For the capacity model of docs/production.md and docs/scale.md. A worker-manager runs in
this process (the production code, `run_worker_manager`) on a private redis-server, with
the local runtime (the baseline, measured in the same run) and with the Docker runtime on
the engine `DOCKER_HOST` names (else the default socket, else the tests' own engine,
started and stopped here), each with the warm pool off and on (one warm worker; before
each create the bench waits until the pool holds it, the pool's state between tasks). The
workers run the built-in agent. For each of the four, COUNT workers:

- create: `create_worker` command → answer (the worker takes input), one at a time, median;
- CPU per create: this process's CPU time (the manager and the bench's client) per create;
  the engine's and the wrappers' CPU are not in it;
- refill (pool on): from a create's answer until the pool holds a warm worker again;
- first message: a `send_message` that the built-in agent records (no git), median;
- memory of an idle worker: the wrapper's RSS (local: /proc; Docker: the container's
  cgroup usage less its page cache), median; with the pool on, also of an unbound warm one;
- delete: `delete_worker` command → answer, median.

It prints its machine, date and load first, then the figures and the ratios to the local
runtime without a pool, and keeps the text and the figures as JSON in `bench/results/`
(`shared/bench_record.py`). Bounded: every wait has a deadline. `--count N` (default 5).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import docker
import psutil
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.worker_manager.main import run_worker_manager  # noqa: E402
from services.worker_manager.registry import WorkerRegistry  # noqa: E402
from services.worker_manager.settings import DockerSettings, WorkerManagerSettings  # noqa: E402
from shared import bench_record, registry  # noqa: E402
from shared.contracts import (  # noqa: E402
    CreateWorkerCommand,
    DeleteWorkerCommand,
    SendMessageCommand,
    WorkerConfig,
    new_id,
)
from shared.logs import configure_logging  # noqa: E402
from shared.messaging import Bus  # noqa: E402
from shared.redis_server import RedisServer  # noqa: E402
from shared.settings import Settings  # noqa: E402

TIMEOUT_S = 300.0
RUNS = (("local", False), ("local", True), ("docker", False), ("docker", True))
"""(runtime, pool on) of the four measured runs; the first is the baseline."""
POOL = {"size": 1, "prewarm": ["claude-code/developer"], "idle_s": 3600.0}


def _engine_url() -> tuple[str, Any]:
    """The engine to use and what to release after (None, or the tests' Engine)."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"], None
    from tests import docker_engine

    engine = docker_engine.acquire()
    return engine.base_url, engine


def _rss_mb(runtime_name: str, ref: str, client: docker.DockerClient | None) -> float:
    if runtime_name == "local":
        pid = int(ref.split(":", 1)[0])
        return float(psutil.Process(pid).memory_info().rss) / 2**20
    assert client is not None
    raw: Any = client.containers.get(ref).stats(stream=False)
    stats = raw["memory_stats"]
    cache = stats.get("stats", {}).get("inactive_file") or stats.get("stats", {}).get("cache", 0)
    return float(stats["usage"] - cache) / 2**20


async def _warm_ready(redis: aioredis.Redis, deadline_s: float) -> str:
    """Wait until the pool holds a warm worker; answer its id."""
    registry_ = WorkerRegistry(redis)
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for record in await registry_.all():
            if record.status == "warm":
                return record.worker_id
        await asyncio.sleep(0.02)
    raise RuntimeError(f"no warm worker within {deadline_s:g} s")


async def _measure(
    redis_url: str,
    data_dir: Path,
    count: int,
    run: tuple[str, bool],
    engine_url: str,
    image: str,
) -> dict[str, list[float]]:
    runtime, pooled = run
    redis = aioredis.Redis.from_url(redis_url)
    await redis.flushdb()
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "adapter": "builtin",
        "manager_id": f"bench-{runtime}-{'pool' if pooled else 'cold'}",
        "runtime": runtime,
        "idle_timeout_s": 0.0,
        "start_timeout_s": TIMEOUT_S,
        "pool": POOL if pooled else {"size": 0},
    }
    client = None
    if runtime == "docker":
        values["docker"] = DockerSettings(base_url=engine_url, image=image, network="host")
        client = docker.DockerClient(base_url=engine_url, version="auto")
    settings = WorkerManagerSettings(**values)
    manager = asyncio.create_task(
        run_worker_manager(
            Settings(data_dir=data_dir), redis, redis_url=redis_url, manager_settings=settings
        )
    )
    bus = Bus(redis, actor=registry.Actor.LANGGRAPH)

    async def call(command: Any) -> Any:
        answer: Any = await bus.request(
            "worker:commands", command, reply_stream="worker:responses", timeout_s=TIMEOUT_S
        )
        if not answer.success:
            raise RuntimeError(f"{type(command).__name__} failed: {answer.error}")
        return answer

    figures: dict[str, list[float]] = {
        "create": [],
        "create_cpu": [],
        "refill": [],
        "message": [],
        "memory": [],
        "warm_memory": [],
        "delete": [],
    }
    try:
        workers = []
        if pooled:
            await _warm_ready(redis, TIMEOUT_S)
        for index in range(count):
            config = WorkerConfig(
                name=f"bench-{index}", agent="claude-code", capabilities=[], env_vars={}
            )
            started, cpu = time.perf_counter(), time.process_time()
            created = await call(CreateWorkerCommand(request_id=new_id(), config=config))
            figures["create"].append(time.perf_counter() - started)
            figures["create_cpu"].append(time.process_time() - cpu)
            workers.append(created.worker_id)
            if pooled:
                answered = time.perf_counter()
                await _warm_ready(redis, TIMEOUT_S)
                figures["refill"].append(time.perf_counter() - answered)
        for worker_id in workers:
            started = time.perf_counter()
            await call(
                SendMessageCommand(
                    request_id=new_id(), worker_id=worker_id, message="bench note", timeout=120
                )
            )
            figures["message"].append(time.perf_counter() - started)
        await asyncio.sleep(2)  # settle
        for worker_id in workers:
            record = await WorkerRegistry(redis).get(worker_id)
            assert record is not None
            figures["memory"].append(_rss_mb(runtime, record.runtime_ref, client))
        if pooled:
            warm = await WorkerRegistry(redis).get(await _warm_ready(redis, TIMEOUT_S))
            assert warm is not None
            figures["warm_memory"].append(_rss_mb(runtime, warm.runtime_ref, client))
        for worker_id in workers:
            started = time.perf_counter()
            await call(DeleteWorkerCommand(request_id=new_id(), worker_id=worker_id))
            figures["delete"].append(time.perf_counter() - started)
    finally:
        manager.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await manager
        if client is not None:
            client.close()
        await redis.aclose()
    return figures


def _label(run: tuple[str, bool]) -> str:
    return f"{run[0]}{'+pool' if run[1] else ''}"


UNITS = {
    "create": ("s", 1.0),
    "create_cpu": ("ms", 1000.0),
    "refill": ("s", 1.0),
    "message": ("s", 1.0),
    "memory": ("MB", 1.0),
    "warm_memory": ("MB", 1.0),
    "delete": ("s", 1.0),
}

REFERENCE = {"refill": "create", "warm_memory": "memory"}
"""The baseline figure a figure the baseline lacks is compared with: a refill is a start."""


def report(count: int, medians: dict[str, dict[str, float | None]]) -> None:
    """Print the medians of every run and each one's ratio to the baseline's."""
    labels = [_label(run) for run in RUNS]
    base = labels[0]
    print(f"{count} workers each, built-in agent, medians; (x): ratio to {base}")
    print(f"{'':<18}" + "".join(f"{label:>19}" for label in labels))
    for name, (unit, scale) in UNITS.items():
        cells = []
        for label in labels:
            value = medians[label][name]
            if value is None:
                cells.append(f"{'-':>19}")
                continue
            reference = medians[base][REFERENCE.get(name, name)]
            ratio = f"({value / reference:.1f}x)" if reference else ""
            cells.append(f"{value * scale:>11.2f} {ratio:>7}")
        print(f"{name + ' (' + unit + ')':<18}" + "".join(cells))
    for runtime in ("local", "docker"):
        cold, warm = medians[runtime]["create"], medians[f"{runtime}+pool"]["create"]
        if cold and warm:
            print(f"{runtime}: create with the pool {cold / warm:.1f}x faster than without")


def main(argv: list[str] | None = None) -> int:
    """Run both runtimes, with and without the pool, and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=5, help="workers per run (5)")
    options = parser.parse_args(argv)
    info = bench_record.context()
    print(bench_record.context_line(info), flush=True)
    configure_logging("WARNING", "console")
    engine_url, engine = _engine_url()
    from services.worker_manager import images

    client = docker.DockerClient(base_url=engine_url, version="auto")
    try:
        image = images.ensure_worker_image(client).image
    finally:
        client.close()
    server = RedisServer().start()
    work = Path(tempfile.mkdtemp(prefix="bench-docker-"))
    samples: dict[str, dict[str, list[float]]] = {}
    try:
        for run in RUNS:
            samples[_label(run)] = asyncio.run(
                _measure(server.url, work / _label(run), options.count, run, engine_url, image)
            )
    finally:
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
        if engine is not None:
            engine.close()
    medians = {
        label: {name: statistics.median(v) if v else None for name, v in figures.items()}
        for label, figures in samples.items()
    }
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        print(bench_record.context_line(info))
        report(options.count, medians)
    figures = {"context": info, "count": options.count, "medians": medians, "samples": samples}
    saved = bench_record.save("docker_workers", text.getvalue(), figures)
    print(text.getvalue().split("\n", 1)[1], end="")
    print(f"(figures in {saved})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
