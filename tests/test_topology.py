"""The replicated topology as processes: two langgraph replicas, two worker-managers.

The actors run as in production, one process each (`python -m services.cli.main run
<actor>`, the harness of bench/flow.py), on PostgreSQL (the API's database and langgraph's
checkpoints, shared by the replicas) and a private redis-server; workers are local processes
running the built-in agent. 20 engineering tasks are created at once; while they run, one
langgraph replica is killed (SIGKILL) and, later, one worker-manager (SIGKILL; its workers
keep running) which then comes back under the same manager id, as a restart policy brings
it back. The tasks belong to 5 projects, 4 each, running at once (`parallel_tasks`).
Asserted: every task completes exactly once (one `completed` terminal event, one
worker created for it, one agent answer), the killed replica's flows are finished by the
other, and no worker is left running or live in the registry afterwards (each is adopted
or its task replaced it, none orphaned).

Processes, not containers: 8 actor containers and 20 worker containers cost minutes of CPU
on this 2-core machine; deploy/compose.yaml itself is brought up in
tests/deploy/test_compose.py.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.cli.admin import create_admin_key
from shared.api_client import ApiClient
from shared.api_client.schemas import ProjectUpdate
from shared.contracts import ProjectCreate, TaskCreate, TaskType
from shared.messaging import Bus
from shared.redis_server import RedisServer
from shared.registry import Actor
from shared.settings import Settings
from tests.support.api import create_pg_database, drop_pg_database

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.timeout(900),
]

ROOT = Path(__file__).resolve().parents[1]
TASKS = 20
KILL_LANGGRAPH_AFTER = 5
"""Kill a langgraph replica once this many tasks have their worker started."""
KILL_MANAGER_AFTER = 10
"""Kill a worker-manager once this many tasks have their worker started."""
PROJECTS = 5
"""The tasks are spread over this many projects, all of a project's at once
(`parallel_tasks`). A project lands one task at a time on its main (its integration turn;
each after the first merges the moved main and runs the checks again): 20 tasks of one
project are 20 landings in a row, minutes on a loaded machine; 5 projects land 4 each,
side by side. The replicas are what is under test, not one project's queue."""
FLOWS_TIMEOUT_S = 600.0
"""A bound only (inside the test's own timeout, so a stuck run still says where each task
stopped): the 20 flows took 211 to 223 s on this 2-core machine at load 8 to 30
(docs/production.md)."""
CLEANUP_TIMEOUT_S = 60.0
"""How long the last tasks' workers may take to be deleted once every task ended."""


def _bench_flow() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_flow", ROOT / "bench" / "flow.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_flow"] = module
    spec.loader.exec_module(module)
    return module


def start_replica(system: Any, name: str, actor: str, **env: str) -> int:
    """`orchestrator run <actor>` as `name` (its log `<name>.log`), with `env` added."""
    log = (system.logs / f"{name}.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "run", actor],
        cwd=ROOT,
        env={**system.env, **env},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    system.processes[name] = process
    return process.pid


def kill(system: Any, name: str) -> None:
    """SIGKILL a replica (no shutdown of any kind)."""
    process = system.processes.pop(name)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture
def postgres_database() -> Any:
    """A migrated PostgreSQL database of its own."""
    try:
        url = asyncio.run(create_pg_database())
    except (OSError, TimeoutError, Exception) as error:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL unreachable: {error!r} (REQUIRE_POSTGRES=1)")
        pytest.skip(f"PostgreSQL unreachable: {error!r}")
    try:
        yield url
    finally:
        asyncio.run(drop_pg_database(url))


async def _drive(system: Any, redis_url: str, database_url: str) -> dict[str, Any]:
    flow = sys.modules["bench_flow"]
    redis = aioredis.Redis.from_url(redis_url)
    _, admin_key = await create_admin_key(system.settings, 1, "topology")
    start_replica(system, "api", "api")
    await asyncio.to_thread(system.wait_api)
    start_replica(system, "scaffolder", "scaffolder")
    for index in (1, 2):
        start_replica(system, f"langgraph-{index}", "langgraph")
        start_replica(
            system,
            f"worker-manager-{index}",
            "worker-manager",
            ORCHESTRATOR_WORKERS__MANAGER_ID=f"worker-manager-{index}",
        )
    try:
        async with ApiClient(system.api_url, key=admin_key, timeout_s=60) as api:
            per_project = TASKS // PROJECTS
            projects = [
                await api.create_project(ProjectCreate(name=f"topology-{n}"))
                for n in range(PROJECTS)
            ]
            for project in projects:  # its tasks run at once: lift its task order
                await api.update_project(project.id, ProjectUpdate(parallel_tasks=per_project))
            await asyncio.gather(  # the warm-ups scaffold the projects; the tasks find them
                *(
                    flow.Driver(api, redis, project.id, flow.TASK_TIMEOUT_S).one(
                        "warm-up: scaffolds the project"
                    )
                    for project in projects
                )
            )
            bus = Bus(redis, actor=Actor.API)
            tasks = [
                await api.create_task(
                    TaskCreate(
                        project_id=projects[i % PROJECTS].id,
                        type=TaskType.ENGINEERING,
                        spec=f"topology #{i}",
                    )
                )
                for i in range(TASKS)
            ]
            events: dict[str, list[Any]] = {task.id: [] for task in tasks}
            killed: list[str] = []

            async def follow(task_id: str) -> None:
                async for event in bus.follow_progress(task_id):
                    events[task_id].append(event)

            async def killer() -> None:
                while len(killed) < 3:
                    started = sum(
                        any(e.current_step == "agent" for e in seen) for seen in events.values()
                    )
                    if not killed and started >= KILL_LANGGRAPH_AFTER:
                        kill(system, "langgraph-1")
                        killed.append(f"langgraph-1 after {started} workers started")
                    elif len(killed) == 1 and started >= KILL_MANAGER_AFTER:
                        kill(system, "worker-manager-1")
                        killed.append(f"worker-manager-1 after {started} workers started")
                    elif len(killed) == 2:
                        await asyncio.sleep(3)  # its restart policy's delay
                        start_replica(
                            system,
                            "worker-manager-1",
                            "worker-manager",
                            ORCHESTRATOR_WORKERS__MANAGER_ID="worker-manager-1",
                        )
                        killed.append("worker-manager-1 restarted")
                    system.check()
                    await asyncio.sleep(0.2)

            started_at = time.monotonic()
            running = [asyncio.ensure_future(killer())]
            running += [asyncio.ensure_future(follow(task.id)) for task in tasks]
            _, pending = await asyncio.wait(
                running, timeout=FLOWS_TIMEOUT_S, return_when=asyncio.FIRST_EXCEPTION
            )
            for future in pending:
                future.cancel()
            failure = running[0].exception() if running[0].done() else None
            if failure is not None:
                raise failure  # an actor exited on its own: say which, now
            if pending:  # say where every unfinished task stopped
                stuck = {
                    task_id: [
                        f"{e.type}:{e.current_step}:{e.message or ''}"[:80] for e in seen[-3:]
                    ]
                    for task_id, seen in events.items()
                    if not any(e.is_terminal for e in seen)
                }
                logs = {
                    path.name: path.read_text(errors="replace")[-1500:]
                    for path in sorted(system.logs.glob("*.log"))
                }
                raise AssertionError(
                    f"{len(stuck)} of {TASKS} tasks unfinished after {FLOWS_TIMEOUT_S:.0f} s "
                    f"(killed: {killed}): {stuck}\nlogs: {logs}"
                )
            for future in running:
                future.result()
            finals = {task.id: await api.get_task(task.id) for task in tasks}
            return {
                "logs": {
                    path.name: path.read_text(errors="replace")
                    for path in sorted(system.logs.glob("*.log"))
                },
                "events": events,
                "finals": finals,
                "killed": killed,
                "seconds": time.monotonic() - started_at,
            }
    finally:
        await redis.aclose()


def test_twenty_tasks_complete_once_across_killed_replicas(
    tmp_path: Path, postgres_database: str
) -> None:
    """20 tasks, each completed exactly once, with one worker and one agent answer, while a
    langgraph replica and a worker-manager are killed; no worker left behind."""
    flow = _bench_flow()
    server = RedisServer().start()
    data_dir = tmp_path / "data"
    system = flow.System(data_dir, server.url)
    system.env["ORCHESTRATOR_DATABASE_URL"] = postgres_database
    system.env["ORCHESTRATOR_WORKERS__HEARTBEAT_TIMEOUT_S"] = "30"
    system.settings = Settings(
        data_dir=data_dir, redis_url=server.url, database_url=postgres_database
    )
    try:
        outcome = asyncio.run(_drive(system, server.url, postgres_database))
        # a worker is deleted after its task's end is recorded (cleanup): give the last
        # tasks' deletes their moment, bounded
        workers_left, registry_live = asyncio.run(_workers_after_cleanup(system, server.url))
    finally:
        system.stop_all()
        server.cleanup()
    print(f"\n{TASKS} tasks in {outcome['seconds']:.1f} s; {outcome['killed']}")
    assert len(outcome["killed"]) == 3, outcome["killed"]
    for task_id, final in outcome["finals"].items():
        seen = outcome["events"][task_id]
        terminal = [e for e in seen if e.is_terminal]
        assert final.status.value == "completed", (task_id, final.status, terminal)
        assert [e.type for e in terminal] == ["completed"], (task_id, terminal)
        runs = Counter(
            "start" if (e.message or "").startswith("worker ") else "answer"
            for e in seen
            if e.current_step == "agent"
            and (e.message or "").startswith(("worker ", "agent answered"))
        )
        assert runs["start"] >= 1, (task_id, [e.message for e in seen])
        assert runs["answer"] == runs["start"], (task_id, [e.message for e in seen])
        workers = {
            (e.message or "").split()[1]
            for e in seen
            if (e.message or "").startswith("worker ") and (e.message or "").endswith(" started")
        }
        failed = [e.message for e in seen if (e.message or "").endswith(" failed")]
        assert len(workers) == 1, (task_id, workers, _mentions(outcome["logs"], workers))
        assert failed == [], (task_id, failed, _mentions(outcome["logs"], workers))
    assert workers_left == []
    assert registry_live == []


def _mentions(logs: dict[str, str], words: set[str]) -> dict[str, list[str]]:
    """The log lines of each actor that mention one of `words` (for a failure's account)."""
    return {
        name: [line[:300] for line in text.splitlines() if any(w in line for w in words)][-20:]
        for name, text in logs.items()
    }


async def _workers_after_cleanup(
    system: Any, redis_url: str, timeout_s: float = CLEANUP_TIMEOUT_S
) -> tuple[list[int], list[str]]:
    """Worker processes and live registry records left once every task ended, waited for
    up to `timeout_s` (the flows delete their workers after recording their end)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left, live = system.worker_pids(), await _live_workers(redis_url)
        if (not left and not live) or time.monotonic() > deadline:
            return left, live
        await asyncio.sleep(0.5)


async def _live_workers(redis_url: str) -> list[str]:
    """Worker records still live in the registry."""
    from services.worker_manager.registry import WorkerRegistry

    client = aioredis.Redis.from_url(redis_url)
    try:
        records = await WorkerRegistry(client).all()
        return [r.worker_id for r in records if r.is_live]
    finally:
        await client.aclose()
