"""What the worker-manager costs per task with a warm pool: `python bench/worker_pool.py`.

A worker-manager runs in a subprocess of its own (the production code, `run_worker_manager`,
from this checkout or the one `--code` names, to compare two versions on the same machine)
on a private redis-server, local runtime, built-in agent, a warm pool of `--pool` workers.
The registry holds `--finished` records of finished workers first, as it does after a day
of tasks (records stay `record_ttl_s`, 24 h). Then `--tasks` tasks, one at a time, each:
create → a message (the built-in agent records it, no git) → the worker kept `--hold-s`
seconds (an agent at work: the monitor's passes and the heartbeats run) → delete → the pool
full again. Per task:

- manager CPU: the manager process's user + system time (not the wrappers');
- Redis commands: every client's (manager, wrappers, this bench's commands to the manager;
  not the bench's polling of the pool), from `INFO stats`;
- create: `create_worker` command → answer, p50.

It prints its machine, date and load, the figures, and keeps text and JSON in
`bench/results/` (`shared/bench_record.py`). Bounded: every wait has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.worker_manager.keys import REGISTRY_INDEX, registry_key  # noqa: E402
from services.worker_manager.registry import WorkerRecord, WorkerRegistry, as_text  # noqa: E402
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

TIMEOUT_S = 120.0
MANAGER_ID = "bench-pool"
_SERVE = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
import redis.asyncio as aioredis
from services.worker_manager.main import run_worker_manager
from services.worker_manager.settings import WorkerManagerSettings
from shared.logs import configure_logging
from shared.settings import Settings

async def main() -> None:
    import os
    configure_logging(os.environ.get("BENCH_MANAGER_LOG", "WARNING"), "console")
    values = json.loads(sys.argv[3])
    redis = aioredis.Redis.from_url(sys.argv[2])
    settings = WorkerManagerSettings(**values)
    await run_worker_manager(
        Settings(data_dir=values["data_dir"]), redis, redis_url=sys.argv[2],
        manager_settings=settings,
    )

asyncio.run(main())
"""


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def _commands(redis: aioredis.Redis) -> int:
    return int((await redis.info("stats"))["total_commands_processed"])


async def _warm(redis: aioredis.Redis, size: int) -> int:
    """Until the pool holds `size` warm workers; answer the Redis commands this wait sent
    (left out of the figures: the bench's own polling). Reads only the ids of warm workers
    (`warm-…`), never the finished records."""
    sent = 0
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        ids = [as_text(i) for i in await redis.smembers(REGISTRY_INDEX)]
        warm = [i for i in ids if i.startswith("warm-")]
        async with redis.pipeline(transaction=False) as pipe:
            for worker_id in warm:
                pipe.hget(registry_key(worker_id), "status")
            statuses = await pipe.execute() if warm else []
        sent += 1 + len(warm)
        if sum(1 for status in statuses if status == b"warm") >= size:
            return sent
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the pool never held {size} warm workers")


async def _seed(redis: aioredis.Redis, count: int) -> None:
    """`count` records of finished workers (another manager id: nobody's to adopt)."""
    records = WorkerRegistry(redis)
    now = time.time()
    for index in range(count):
        worker_id = f"done-{index:05d}"
        await records.put(
            WorkerRecord(
                worker_id=worker_id,
                name="done",
                agent="claude-code",
                adapter="builtin",
                runtime="local",
                manager_id=MANAGER_ID,
                created_at=now - 3600,
            )
        )
        await records.finish(worker_id, "stopped", error="task done")


def _setting(text: str) -> tuple[str, Any]:
    """`name=json` of `--pool-setting`."""
    name, _, value = text.partition("=")
    return name, json.loads(value)


def _start_manager(code: str, redis_url: str, values: dict[str, Any]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _SERVE, code, redis_url, json.dumps(values)],
        cwd=code,
        start_new_session=True,
    )


async def measure(options: argparse.Namespace, redis_url: str, work: Path) -> dict[str, Any]:
    """One run; the per-task samples."""
    redis = aioredis.Redis.from_url(redis_url)
    await redis.flushdb()
    await _seed(redis, options.finished)
    values = {
        "data_dir": str(work / "workers"),
        "adapter": "builtin",
        "manager_id": MANAGER_ID,
        "idle_timeout_s": 0.0,
        "start_timeout_s": TIMEOUT_S,
        "pool": {
            "size": options.pool,
            "prewarm": ["claude-code/developer"],
            "idle_s": 3600.0,
            **dict(_setting(text) for text in options.pool_setting),
        },
    }
    manager = _start_manager(options.code, redis_url, values)
    bus = Bus(redis, actor=registry.Actor.LANGGRAPH)

    async def call(command: Any) -> Any:
        answer: Any = await bus.request(
            "worker:commands", command, reply_stream="worker:responses", timeout_s=TIMEOUT_S
        )
        if not answer.success:
            raise RuntimeError(f"{type(command).__name__} failed: {answer.error}")
        return answer

    samples: dict[str, list[float]] = {"create_ms": [], "cpu_ms": [], "commands": [], "warm": []}
    try:
        await _warm(redis, options.pool)
        await asyncio.sleep(1.0)
        for index in range(options.tasks):
            cpu, commands = _cpu_s(manager.pid), await _commands(redis)
            config = WorkerConfig(
                name=f"bench-{index}", agent="claude-code", capabilities=[], env_vars={}
            )
            started = time.perf_counter()
            created = await call(CreateWorkerCommand(request_id=new_id(), config=config))
            samples["create_ms"].append((time.perf_counter() - started) * 1000)
            samples["warm"].append(float(created.worker_id.startswith("warm-")))
            await call(
                SendMessageCommand(
                    request_id=new_id(), worker_id=created.worker_id, message="note", timeout=60
                )
            )
            await asyncio.sleep(options.hold_s)
            await call(DeleteWorkerCommand(request_id=new_id(), worker_id=created.worker_id))
            own = await _warm(redis, options.pool) + 1  # and INFO
            samples["cpu_ms"].append((_cpu_s(manager.pid) - cpu) * 1000)
            samples["commands"].append(float(await _commands(redis) - commands - own))
    finally:
        manager.terminate()
        try:
            manager.wait(timeout=30)
        except subprocess.TimeoutExpired:
            manager.kill()
            manager.wait()
        for process in psutil.process_iter(["cmdline"]):  # its warm wrappers
            with contextlib.suppress(psutil.Error):
                if str(work) in " ".join(process.info["cmdline"] or []):
                    process.kill()
        await redis.aclose()
    return samples


def main(argv: list[str] | None = None) -> int:
    """Run and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=10, help="tasks, one at a time (10)")
    parser.add_argument("--pool", type=int, default=2, help="warm workers (2)")
    parser.add_argument("--hold-s", type=float, default=5.0, help="a worker's life (5 s)")
    parser.add_argument("--finished", type=int, default=1000, help="finished records (1000)")
    parser.add_argument("--code", default=str(ROOT), help="the checkout the manager runs")
    parser.add_argument(
        "--pool-setting",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="a setting of the pool (`workers.pool`), e.g. idle_priority=false",
    )
    options = parser.parse_args(argv)
    options.code = str(Path(options.code).resolve())
    if min(options.tasks, options.pool) < 1 or options.finished < 0 or options.hold_s < 0:
        parser.error("--tasks and --pool must be at least 1, --finished and --hold-s >= 0")
    info = bench_record.context()
    print(bench_record.context_line(info), flush=True)
    configure_logging("WARNING", "console")
    server = RedisServer(appendonly=False).start()
    work = Path(tempfile.mkdtemp(prefix="bench-pool-"))
    try:
        samples = asyncio.run(measure(options, server.url, work))
    finally:
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    warm = int(sum(samples["warm"]))
    load = os.getloadavg()
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        print(bench_record.context_line(info))
        print(
            f"manager {options.code} ; {options.tasks} tasks one at a time, pool "
            f"{options.pool}, each worker kept {options.hold_s:g} s, "
            f"{options.finished} finished records in the registry"
            + (f"; pool settings {', '.join(options.pool_setting)}" if options.pool_setting else "")
        )
        print(
            f"per task (median): manager CPU {medians['cpu_ms']:.0f} ms, Redis commands "
            f"{medians['commands']:.0f}, create p50 {medians['create_ms']:.0f} ms, max "
            f"{max(samples['create_ms']):.0f} ms ({warm} of {options.tasks} took a warm worker) "
            f"(load at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})"
        )
    figures = {"context": info, "options": vars(options), "medians": medians, "samples": samples}
    saved = bench_record.save("worker_pool", text.getvalue(), figures)
    print(text.getvalue().split("\n", 1)[1], end="")
    print(f"(figures in {saved})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
