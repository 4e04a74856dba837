"""Benchmark of Docker workers against local-process workers: `python bench/docker_workers.py`.

For the capacity model of docs/production.md. A worker-manager runs in this process (the
production code, `run_worker_manager`) on a private redis-server, first with the local
runtime (the baseline, measured in the same run), then with the Docker runtime on the
engine `DOCKER_HOST` names (else the default socket, else the tests' own engine, started
and stopped here); the workers run the built-in agent. For each runtime, COUNT workers:

- create: `create_worker` command → answer (the worker takes input), one at a time, median;
- first message: a `send_message` that the built-in agent records (no git), median;
- memory of an idle worker: the wrapper's RSS (local: /proc; Docker: the container's
  cgroup usage less its page cache), median;
- delete: `delete_worker` command → answer, median.

It prints the figures and the Docker/local ratios. Bounded: every wait has a deadline.
`--count N` (default 5).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from services.worker_manager.settings import DockerSettings, WorkerManagerSettings  # noqa: E402
from shared import registry  # noqa: E402
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


async def _measure(
    redis_url: str, data_dir: Path, count: int, runtime: str, engine_url: str, image: str
) -> dict[str, float]:
    redis = aioredis.Redis.from_url(redis_url)
    await redis.flushdb()
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "adapter": "builtin",
        "manager_id": f"bench-{runtime}",
        "runtime": runtime,
        "idle_timeout_s": 0.0,
        "start_timeout_s": TIMEOUT_S,
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

    figures: dict[str, list[float]] = {"create": [], "message": [], "memory": [], "delete": []}
    try:
        workers = []
        for index in range(count):
            config = WorkerConfig(
                name=f"bench-{index}", agent="claude-code", capabilities=[], env_vars={}
            )
            started = time.perf_counter()
            created = await call(CreateWorkerCommand(request_id=new_id(), config=config))
            figures["create"].append(time.perf_counter() - started)
            workers.append(created.worker_id)
        for worker_id in workers:
            started = time.perf_counter()
            await call(
                SendMessageCommand(
                    request_id=new_id(), worker_id=worker_id, message="bench note", timeout=120
                )
            )
            figures["message"].append(time.perf_counter() - started)
        await asyncio.sleep(2)  # settle
        from services.worker_manager.registry import WorkerRegistry

        for worker_id in workers:
            record = await WorkerRegistry(redis).get(worker_id)
            assert record is not None
            figures["memory"].append(_rss_mb(runtime, record.runtime_ref, client))
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
    return {name: statistics.median(samples) for name, samples in figures.items()}


def main(argv: list[str] | None = None) -> int:
    """Run both runtimes and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=5, help="workers per runtime (5)")
    options = parser.parse_args(argv)
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
    try:
        results = {
            runtime: asyncio.run(
                _measure(server.url, work / runtime, options.count, runtime, engine_url, image)
            )
            for runtime in ("local", "docker")
        }
    finally:
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
        if engine is not None:
            engine.close()
    print(f"{options.count} workers each, built-in agent, medians")
    print(f"{'':<22}{'local':>10}{'docker':>10}{'ratio':>8}")
    units = {"create": "s", "message": "s", "memory": "MB", "delete": "s"}
    for name, unit in units.items():
        local, in_docker = results["local"][name], results["docker"][name]
        ratio = in_docker / local if local else float("nan")
        print(f"{name + ' (' + unit + ')':<22}{local:>10.2f}{in_docker:>10.2f}{ratio:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
