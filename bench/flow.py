"""Benchmark of the orchestration of an engineering task: `python bench/flow.py` (or `make bench`).

The system runs as in production, one process per actor (`python -m services.cli.main run
<actor>`): the API on SQLite in a temporary data directory, its outbox relay, the scaffolder,
the worker-manager with local-process workers running the built-in deterministic agent (no
LLM: it writes the prompt to a file, commits and pushes), and the langgraph actor, all on a
private redis-server started here; git remotes are local bare repositories. Tasks are created
with `POST /api/tasks` and followed to `completed`.

Figures:

- overhead of a task = end to end (client clock just before `POST /api/tasks` → the API's
  `updated_at` of the completed task) minus the agent's own time (the interval between the
  worker's "worker started" and "agent answered" progress events, i.e. the agent run plus the
  publish of its answer) and minus the project's checks (the commands' own `duration_s` in
  the task's result, every run: the flow runs them after the agent and again after merging a
  moved base). Agent and checks are the project's work, which a person runs too. The
  overhead is what the system adds around it: the outbox relay, LangGraph's checkpoints, API
  calls, starting a worker process and cloning the repository, the message hops, verifying
  the commit, waiting for the project's integration turn, merging. The worker is deleted
  after the task's end is recorded (cleanup, not the task's wait). The progress events' own
  timestamps split it per step.
- one task at a time (`--repeat` runs, median) in the bench's project, whose checks are the
  scaffolded template's `make test` (~3 s); then a team's burst: `--tasks` tasks created at
  once, spread over `--projects` projects (scaffolded beforehand, not timed), each declaring
  one cheap check in `.orchestrator/checks.toml` (`python -m compileall -q backend`), the
  quick check a small change gets (per-task p50/p95, wall time from the first POST to the
  last completion, tasks/s). Last, with the pool on, `--heavy` tasks at once in the bench's
  one project with its full checks, labelled as such: they wait for the project's
  integration turn one at a time, and after each merge of a moved base `make test` runs
  again; that waiting is overhead, the checks' own time is not. A warm-up task runs first:
  it scaffolds the project (the timed tasks find it scaffolded).
- memory: the langgraph process that ran every timed task (its code loaded and warm) is
  read with no flow alive; then the worker-manager and the scaffolder are stopped and
  `--waiting` tasks are created, so every flow stops at its `create_worker` interrupt (the
  command waits unanswered on `worker:commands`: no worker process exists) and the RSS is
  read again. A project runs at most 100 tasks at once: past 100, the tasks go to new
  projects, whose flows stop at their `scaffold` interrupt instead.
  VmRSS / VmHWM of that process from /proc, and the size of its SQLite checkpoint file.

Baselines, measured in the same run:

- bus floor: a task's flow crosses 11 sequential bus hops before its end is recorded
  (engineering:queue; create, send the spec and send the checks directive on
  worker:commands and their answers on worker:responses; the worker's input and output
  streams, twice). One hop (`Bus.publish` → consumer handler, one message at a time, on the
  idle server before the actors start) is timed, median of 200; `overhead / (11 x hop)`
  says how far the orchestration is from pure messaging.
- by hand: what a person would do without the system, in this process: clone the repository
  and check out a branch, as the worker-manager does, then run the same built-in agent
  directly and the project's checks. `end to end / by hand` is the price of going through
  the system; the agent's time measured here also checks the agent time subtracted above.
- worker start: a fresh interpreter importing the worker wrapper, the part of
  `create_worker` that every local worker pays before it takes input.

Pool off and on: the timed phases run twice, first with every create starting its own worker
(`ORCHESTRATOR_WORKERS__POOL__SIZE=0`), then with a warm pool of `--pool` workers (the
worker-manager restarted with it, the pool full before the first task); the memory of an idle
warm worker (RSS and USS) and of the whole pool is read from /proc while it is full. The
burst with the pool on (and the `--heavy` tasks after it) runs on a pool sized for it,
`--burst-pool` warm workers (default `--tasks`: every task of the burst finds one warm): the
worker-manager is restarted with that size and the pool full before the burst's first task
(`burst_pool` in the figures: its size and how long it took to fill). Verdicts
against the targets of issue 19 are printed last. The text and the figures (JSON) are also
written to `bench/results/` (`shared/bench_record.py`).

Everything started here (actors, workers, redis-server) is stopped at the end; the data
directory is removed. Bounded: every wait has a deadline. `--quick` is a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis.asyncio as aioredis
import structlog

from services.cli.admin import create_admin_key
from services.langgraph.keys import FLOWS_KEY, WAITS_KEY
from services.worker_manager.registry import WorkerRegistry
from services.worker_manager.workspace import clone_repository
from services.worker_wrapper.agents import AgentRequest, BuiltinAgent
from services.worker_wrapper.agents.base import ignore_activity
from services.worker_wrapper.directives import run_checks
from shared import bench_record, registry
from shared.api_client import ApiClient
from shared.api_client.schemas import ProjectUpdate
from shared.contracts import (
    EngineeringMessage,
    ProgressEvent,
    ProjectCreate,
    TaskCreate,
    TaskStatus,
    TaskType,
)
from shared.messaging import Bus, MessageContext
from shared.observability.metrics import iter_families
from shared.redis_server import RedisServer, free_port
from shared.registry import Actor
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
HOPS = 11
"""Sequential bus hops of an engineering task on a scaffolded project (see the docstring)."""
ACTORS = ("api", "scaffolder", "worker-manager", "langgraph")
START_TIMEOUT_S = 90.0
TASK_TIMEOUT_S = 600.0
MAX_PARALLEL_TASKS = 100
"""The most engineering tasks one project runs at once (the API's bound)."""
TARGET_OVERHEAD_S = 0.100
TARGET_HAND_RATIO = 1.5
TARGET_BATCH_OVERHEAD_S = 3.0
SEGMENTS = (
    ("API → flow started", "created", "start"),
    ("start, prepare", "start", "create_worker"),
    ("create_worker (spawn, clone)", "create_worker", "send_spec"),
    ("spec → agent starts", "send_spec", "agent_start"),
    ("agent (not overhead)", "agent_start", "agent_end"),
    ("answer → verify", "agent_end", "verify"),
    ("verify", "verify", "checks"),
    ("checks (in the worker)", "checks", "integrate"),
    ("integrate, finish", "integrate", "end"),
)
"""(label, from mark, to mark) of a task's timeline, marks from its progress events. The
worker is deleted after the task's end is recorded (cleanup): not on the timeline."""
CHECKS_HOPS = "  of which not the commands"
"""A derived row: the checks segment minus the checks' own commands (one run)."""
BURST_CHECK = "python -m compileall -q backend"
"""The cheap check the burst's projects declare (`.orchestrator/checks.toml`): byte-compile
the code, the kind of quick check a small change gets."""


def pct(values: list[float], q: float) -> float:
    """The q-quantile of `values` (nearest rank); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


@dataclass
class TaskRun:
    """One task's timeline (epoch seconds)."""

    task_id: str
    created: float
    ended: float = 0.0
    status: str = ""
    error: str = ""
    checks_s: float = 0.0
    """The project's checks as the worker ran them (every run, the commands' own time)."""
    check_runs: int = 0
    """How many times the checks ran (again after each merge of a moved base)."""
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def e2e_s(self) -> float:
        """Creation to the recorded final status."""
        return self.ended - self.created

    @property
    def agent_s(self) -> float:
        """The agent's own time (worker's progress events)."""
        return self.marks["agent_end"] - self.marks["agent_start"]

    @property
    def work_s(self) -> float:
        """The project's own work: the agent plus its checks (what a person also runs)."""
        return self.agent_s + self.checks_s

    @property
    def overhead_s(self) -> float:
        """End to end minus the project's own work (agent and checks)."""
        return self.e2e_s - self.work_s

    def segment_s(self, start: str, end: str) -> float | None:
        """Time between two marks (None when one is missing)."""
        if start in self.marks and end in self.marks:
            return self.marks[end] - self.marks[start]
        return None


def checks_seconds(result: dict[str, Any] | None) -> float:
    """The commands' own time of every run of the project's checks in a task's result."""
    runs = ((result or {}).get("checks") or {}).get("runs") or []
    return sum(
        float(check.get("duration_s") or 0.0)
        for run in runs
        if isinstance(run, dict)
        for check in run.get("checks") or []
        if isinstance(check, dict)
    )


def mark_of(event: ProgressEvent) -> str | None:
    """Which mark of the timeline a progress event sets (None: not one we time)."""
    if event.current_step == "agent" and event.message:
        if event.message.startswith("worker "):
            return "agent_start"
        if event.message.startswith("agent answered"):
            return "agent_end"
        return None
    if event.type == "started":
        return "start"
    if event.type == "progress" and event.current_step in (
        "prepare",
        "scaffold",
        "create_worker",
        "send_spec",
        "verify",
        "checks",
        "integrate",
        "delete_worker",
    ):
        return event.current_step
    return None


# the system ---------------------------------------------------------------------------------


class System:
    """The actors as processes on one data directory and one redis-server."""

    def __init__(self, data_dir: Path, redis_url: str) -> None:
        self.data_dir = data_dir
        self.redis_url = redis_url
        self.logs = data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        service_key = secrets.token_urlsafe(32)
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("ORCHESTRATOR_") and k not in ("REDIS_URL", "DATABASE_URL")
        }
        self.env = {
            **inherited,
            "ORCHESTRATOR_DATA_DIR": str(data_dir),
            "ORCHESTRATOR_REDIS_URL": redis_url,
            "ORCHESTRATOR_API__PORT": str(port),
            "ORCHESTRATOR_API__SERVICE_KEY": service_key,
            "ORCHESTRATOR_API__KEY": service_key,
            "ORCHESTRATOR_LOG_LEVEL": "WARNING",
            "ORCHESTRATOR_WORKERS__ADAPTER": "builtin",
            # a manager adopts (or stops as orphans) every worker of its manager id found in
            # the process table: another system on this machine must not take ours for its own
            "ORCHESTRATOR_WORKERS__MANAGER_ID": f"bench-{secrets.token_hex(4)}",
            # deadlines only (a loaded 2-core machine starts 50 Python workers slowly)
            "ORCHESTRATOR_WORKERS__START_TIMEOUT_S": "300",
            "ORCHESTRATOR_LANGGRAPH__TIMEOUTS__CREATE_WORKER_S": "3600",
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.metrics_urls: dict[str, str] = {}
        """Each actor's /metrics (a port of its own)."""
        self.settings = Settings(data_dir=data_dir, redis_url=redis_url)

    def start(self, actor: str) -> int:
        """Start `orchestrator run <actor>`; returns its pid."""
        log = (self.logs / f"{actor}.log").open("ab")
        metrics_port = free_port()
        self.metrics_urls[actor] = f"http://127.0.0.1:{metrics_port}/metrics"
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "run", actor],
            cwd=ROOT,
            env={
                **self.env,
                "ORCHESTRATOR_METRICS__PORT": str(metrics_port),
                "ORCHESTRATOR_METRICS__HOST": "127.0.0.1",
            },
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes[actor] = process
        return process.pid

    def set_pool(self, size: int) -> None:
        """The warm pool size of the worker-manager's next start (0: no pool)."""
        self.env["ORCHESTRATOR_WORKERS__POOL__SIZE"] = str(size)

    def stop(self, actor: str) -> None:
        """SIGTERM (the actor shuts down gracefully), SIGKILL after 30 s."""
        process = self.processes.pop(actor, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def check(self) -> None:
        """Raise when an actor died."""
        for actor, process in self.processes.items():
            if process.poll() is not None:
                tail = (self.logs / f"{actor}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{actor} exited with {process.returncode}:\n{tail}")

    def wait_api(self) -> None:
        """Until the API answers /health."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self.check()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the API did not answer within {START_TIMEOUT_S:.0f} s")

    def stop_all(self) -> None:
        """Stop every actor, then every worker process left on this system's Redis."""
        for actor in reversed(list(self.processes)):
            self.stop(actor)
        for pid in self.worker_pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # a worker leads a process group of its own

    def worker_pids(self) -> list[int]:
        """Worker wrappers started for this system (their WORKER_REDIS_URL is ours)."""
        found = []
        for process in psutil.process_iter(["pid", "cmdline"]):
            cmdline = process.info["cmdline"] or []
            if "services.worker_wrapper" not in cmdline:
                continue
            with contextlib.suppress(psutil.Error):
                if process.environ().get("WORKER_REDIS_URL") == self.redis_url:
                    found.append(int(process.info["pid"]))
        return found


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB, from /proc."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(value.split()[0])
    return figures


def checkpoint_bytes(data_dir: Path) -> int:
    """Size of langgraph's SQLite checkpoint database with its write-ahead log."""
    return sum(path.stat().st_size for path in (data_dir / "langgraph").glob("checkpoints.sqlite*"))


# driving tasks ------------------------------------------------------------------------------


class Driver:
    """Creates tasks through the API and follows them to their final status."""

    def __init__(
        self, api: ApiClient, redis: aioredis.Redis, project_id: str, task_timeout_s: float
    ) -> None:
        self.api = api
        self.redis = redis
        self.bus = Bus(redis, actor=Actor.API)
        self.project_id = project_id
        self.task_timeout_s = task_timeout_s
        self.burst: list[str] = []
        """The projects of the team's burst (`burst_projects`)."""

    async def create(self, spec: str, project_id: str | None = None) -> TaskRun:
        """POST /api/tasks (in the bench's project unless told); the clock starts just
        before."""
        created = time.time()
        task = await self.api.create_task(
            TaskCreate(
                project_id=project_id or self.project_id, type=TaskType.ENGINEERING, spec=spec
            )
        )
        return TaskRun(task.id, created)

    async def follow(self, run: TaskRun, *, behind: int = 0) -> TaskRun:
        """Collect the task's progress marks until its terminal event, then its end time
        and its checks' time. A task not done by the deadline raises with a diagnosis."""
        try:
            async with asyncio.timeout(self.deadline_s(behind)):
                async for event in self.bus.follow_progress(run.task_id):
                    mark = mark_of(event)
                    if mark is not None:
                        run.marks.setdefault(mark, event.timestamp.timestamp())
                    if event.is_terminal:
                        run.error = event.error or ""
        except TimeoutError:
            raise RuntimeError(await self.diagnosis(run, behind)) from None
        task = await self.api.get_task(run.task_id)
        run.status = task.status.value
        run.ended = (task.updated_at or task.created_at).timestamp()
        run.checks_s = checks_seconds(task.result)
        run.check_runs = len(((task.result or {}).get("checks") or {}).get("runs") or [])
        run.marks["created"] = run.created
        run.marks["end"] = run.ended
        if task.status != TaskStatus.COMPLETED or "agent_end" not in run.marks:
            raise RuntimeError(f"task {run.task_id} ended {run.status}: {run.error}")
        return run

    def deadline_s(self, behind: int) -> float:
        """How long a task may take when `behind` others of its project were created with
        it: their integrations come one at a time, each merge followed by the checks."""
        return self.task_timeout_s * (1 + behind / 10)

    async def diagnosis(self, run: TaskRun, behind: int) -> str:
        """Where a task that did not end in time stands: its status, its flow and wait in
        langgraph, its last progress events, the workers of the registry."""
        task = await self.api.get_task(run.task_id)
        redis = self.redis
        lines = [
            f"task {run.task_id} not done within {self.deadline_s(behind):.0f} s: "
            f"status {task.status.value}, marks {sorted(run.marks)}"
        ]
        flow = await redis.hget(FLOWS_KEY, run.task_id)
        wait = await redis.hget(WAITS_KEY, run.task_id)
        lines.append(f"langgraph flow: {flow!r}; wait: {wait!r}")
        workers = await WorkerRegistry(redis).all()
        lines.append(
            "workers: " + ", ".join(f"{w.worker_id} {w.status} task={w.task_id}" for w in workers)
        )
        return "\n".join(lines)

    async def one(self, spec: str, project_id: str | None = None) -> TaskRun:
        """Create a task (in the bench's project unless told) and wait for it."""
        return await self.follow(await self.create(spec, project_id))

    async def many(self, count: int, spec: str, projects: list[str] | None = None) -> list[TaskRun]:
        """Create `count` tasks at once (spread over `projects` in turn; the bench's project
        unless told) and wait for all of them."""
        chosen = projects or [self.project_id]
        behind = -(-count // len(chosen)) - 1  # others of the same project

        async def run_one(index: int) -> TaskRun:
            project_id = chosen[index % len(chosen)]
            run = await self.create(f"{spec} #{index}", project_id)
            return await self.follow(run, behind=behind)

        return list(await asyncio.gather(*(run_one(i) for i in range(count))))


async def burst_projects(driver: Driver, count: int, work: Path) -> list[str]:
    """`count` projects for the team's burst, scaffolded (a first task each, all at once,
    not timed), each declaring one cheap check (`BURST_CHECK`) in `.orchestrator/checks.toml`
    pushed to its main branch."""
    api = driver.api
    projects = []
    for index in range(count):
        project = await api.create_project(ProjectCreate(name=f"bench-burst-{index}"))
        await api.update_project(project.id, ProjectUpdate(parallel_tasks=MAX_PARALLEL_TASKS))
        projects.append(project.id)
    await asyncio.gather(
        *(driver.one(f"bench: scaffold burst project #{i}", p) for i, p in enumerate(projects))
    )
    for index, project_id in enumerate(projects):
        url = (await api.get_project(project_id)).repository_url or ""
        await asyncio.to_thread(declare_cheap_check, url, work / f"burst-{index}")
    return projects


def declare_cheap_check(repo_url: str, workspace: Path) -> None:
    """Commit `.orchestrator/checks.toml` (the burst's cheap check) to the remote's main."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@localhost",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@localhost",
    }

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=workspace, env=env, check=True, capture_output=True)

    workspace.mkdir(parents=True)
    git("clone", "--quiet", repo_url, ".")
    declared = workspace / ".orchestrator" / "checks.toml"
    declared.parent.mkdir(exist_ok=True)
    declared.write_text(f'[[checks]]\nname = "compile"\ncommand = "{BURST_CHECK}"\n')
    git("add", ".orchestrator/checks.toml")
    git("commit", "--quiet", "-m", "bench: one cheap check")
    git("push", "--quiet", "origin", "HEAD:main")


async def wait_for(redis: aioredis.Redis, key: str, count: int, timeout_s: float) -> int:
    """Until the hash `key` holds `count` fields (or the deadline); returns the last count."""
    deadline = time.monotonic() + timeout_s
    held = 0
    while time.monotonic() < deadline:
        held = int(await redis.hlen(key))
        if held == count:
            return held
        await asyncio.sleep(0.2)
    return held


# baselines ----------------------------------------------------------------------------------


async def bus_hop_ms(redis_url: str, rounds: int) -> float:
    """Median publish → handler time of one message at a time on our Bus (idle server)."""
    client = aioredis.Redis.from_url(redis_url)
    stream = registry.get("engineering:queue").name
    bus = Bus(client, actor=Actor.LANGGRAPH)
    arrived: asyncio.Queue[float] = asyncio.Queue()

    async def handle(message: EngineeringMessage, ctx: MessageContext) -> None:
        arrived.put_nowait(time.perf_counter())

    consumer = bus.consumer(stream, handle, concurrency=1, block_ms=1000)
    await consumer.ensure_groups()
    runner = asyncio.create_task(consumer.run())
    samples = []
    try:
        for index in range(rounds + 20):
            sent = time.perf_counter()
            await bus.publish(
                stream, EngineeringMessage(task_id=f"t-{index}", project_id="p", user_id=1)
            )
            got = await asyncio.wait_for(arrived.get(), 10)
            if index >= 20:  # the first ones warm the connections up
                samples.append((got - sent) * 1000)
    finally:
        consumer.stop()
        await runner
        await client.flushdb()
        await client.aclose()
    return statistics.median(samples)


async def by_hand_s(repo_url: str, work: Path, rounds: int) -> dict[str, float]:
    """Medians of the built-in agent run directly, as a person would: clone and check out a
    branch, run the agent, run the project's checks. `total_s` (all of it), `agent_s`,
    `checks_s` (the checks' commands, as the worker reports them)."""
    agent = BuiltinAgent()
    totals, agents, checks = [], [], []
    for index in range(rounds):
        workspace = work / f"by-hand-{index}"
        started = time.perf_counter()
        await asyncio.to_thread(
            clone_repository, repo_url, workspace, f"by-hand/{index}", dict(os.environ)
        )
        agent_started = time.perf_counter()
        request = AgentRequest(
            request_id=f"by-hand-{index}",
            prompt=f"bench: by hand #{index}",
            workspace=workspace,
            timeout_s=60,
            env=dict(os.environ),
        )
        result = await agent.run(request, ignore_activity)
        if result.status != "success":
            raise RuntimeError(f"the built-in agent failed by hand: {result.error}")
        agents.append(time.perf_counter() - agent_started)
        report = await run_checks(workspace, dict(os.environ), 600)
        if not report["passed"]:
            raise RuntimeError(f"the project's checks failed by hand: {report['note']}")
        totals.append(time.perf_counter() - started)
        checks.append(sum(float(c["duration_s"]) for c in report["checks"]))
    return {
        "total_s": statistics.median(totals),
        "agent_s": statistics.median(agents),
        "checks_s": statistics.median(checks),
    }


_WORKER_IMPORTS = (
    "from services.worker_wrapper.__main__ import skip_unused_imports\n"
    "skip_unused_imports()\n"
    "import services.worker_wrapper.main"
)


def worker_start_s(rounds: int) -> float:
    """Median time of a fresh interpreter importing the worker wrapper as its entry point
    does (what every local worker pays before it can take input; `bench/wrapper.py` times
    the entry point itself)."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", _WORKER_IMPORTS], cwd=ROOT, check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


# the run ------------------------------------------------------------------------------------


@dataclass
class Options:
    """Command-line options."""

    tasks: int
    repeat: int
    waiting: int
    pool: int
    burst_pool: int
    """Warm workers of the pool-on burst (`tasks` by default: one per task of the burst)."""
    projects: int
    """Projects the burst of `tasks` is spread over (each declares one cheap check)."""
    heavy: int
    """Tasks at once in the bench's one project (its full `make test`), pool on; 0: none."""
    as_json: bool
    settle_s: float
    """Pause before reading a process's memory."""
    task_timeout_s: float
    """How long one task may take before the run stops with a diagnosis of it."""


def parse(argv: list[str] | None = None) -> Options:
    """Read the command line (`--quick` changes the defaults, explicit values still win)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, help="tasks created at once (50; quick 3)")
    parser.add_argument("--repeat", type=int, help="one-task runs (5; quick 2)")
    parser.add_argument("--waiting", type=int, help="waiting flows, memory (1000; quick 20)")
    parser.add_argument("--pool", type=int, help="warm workers of the pool-on run (10; quick 2)")
    parser.add_argument(
        "--burst-pool",
        type=int,
        help="warm workers of the pool-on burst, the manager restarted with them (--tasks)",
    )
    parser.add_argument(
        "--projects", type=int, help="projects the burst is spread over (10; quick 2)"
    )
    parser.add_argument(
        "--heavy",
        type=int,
        help="tasks at once in one project with its full checks, pool on (--tasks; 0: none)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run with small counts")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    quick = bool(args.quick)

    def chosen(value: int | None, full: int, smoke: int) -> int:
        if value is not None:
            return value
        return smoke if quick else full

    options = Options(
        tasks=chosen(args.tasks, 50, 3),
        repeat=chosen(args.repeat, 5, 2),
        waiting=chosen(args.waiting, 1000, 20),
        pool=chosen(args.pool, 10, 2),
        burst_pool=args.burst_pool if args.burst_pool is not None else chosen(args.tasks, 50, 3),
        projects=chosen(args.projects, 10, 2),
        heavy=args.heavy if args.heavy is not None else chosen(args.tasks, 50, 3),
        as_json=bool(args.json),
        settle_s=1.0 if quick else 3.0,
        task_timeout_s=180.0 if quick else TASK_TIMEOUT_S,
    )
    if min(options.tasks, options.repeat, options.waiting, options.projects) < 1:
        parser.error("--tasks, --repeat, --waiting and --projects must be at least 1")
    if options.heavy < 0:
        parser.error("--heavy must be at least 0")
    if min(options.pool, options.burst_pool) < 0:
        parser.error("--pool and --burst-pool must be at least 0")
    return options


def say(text: str) -> None:
    """Progress of the run, on stderr (stdout carries the figures)."""
    print(text, file=sys.stderr, flush=True)


async def measure(options: Options, system: System) -> dict[str, Any]:
    """Every phase; returns the figures."""
    figures: dict[str, Any] = {"options": vars(options)}
    redis = aioredis.Redis.from_url(system.redis_url)
    try:
        say("baseline: bus hop")
        figures["bus_hop_ms"] = await bus_hop_ms(system.redis_url, 200)
        _, admin_key = await create_admin_key(system.settings, 1, "bench")
        for actor in ACTORS:
            system.start(actor)
            if actor == "api":
                await asyncio.to_thread(system.wait_api)
        async with ApiClient(system.api_url, key=admin_key, timeout_s=60) as api:
            project = await api.create_project(ProjectCreate(name="bench"))
            # "N at once" means N flows at once: lift the project's task order (one at a time)
            await api.update_project(project.id, ProjectUpdate(parallel_tasks=MAX_PARALLEL_TASKS))
            driver = Driver(api, redis, project.id, options.task_timeout_s)
            say("warm-up task (scaffolds the project)")
            first = await driver.one("bench: warm-up")
            figures["first_task"] = {"e2e_s": first.e2e_s, "overhead_s": first.overhead_s}
            say(f"burst: {options.projects} projects, scaffolded, one cheap check each")
            driver.burst = await burst_projects(driver, options.projects, system.data_dir / "burst")
            figures["pool_off"] = await timed_phases(options, system, driver, redis, "pool off")
            say(f"worker-manager restarted with a pool of {options.pool}")
            system.stop("worker-manager")
            system.set_pool(options.pool)
            system.start("worker-manager")
            figures["pool"] = await pool_memory(system, redis, options.pool)

            async def burst_pool() -> None:
                if options.burst_pool != options.pool:
                    say(f"worker-manager restarted with a pool of {options.burst_pool} (burst)")
                    system.stop("worker-manager")
                    system.set_pool(options.burst_pool)
                    system.start("worker-manager")
                figures["burst_pool"] = await pool_memory(system, redis, options.burst_pool)

            figures["pool_on"] = await timed_phases(
                options, system, driver, redis, "pool on", before_burst=burst_pool
            )
            if options.heavy:
                say(f"pool on: {options.heavy} tasks at once in one project, its full checks")
                heavy = await driver.many(options.heavy, "bench: heavy")
                await wait_for(redis, FLOWS_KEY, 0, 60)
                figures["pool_on"]["heavy"] = timing_figures(heavy, heavy)["single"]
            figures.update(figures["pool_off"])  # the keys of earlier runs' JSON
            repo_url = (await api.get_project(project.id)).repository_url or ""
            say("baseline: by hand")
            rounds = min(options.repeat, 5)
            hand = await by_hand_s(repo_url, system.data_dir / "by-hand", rounds)
            figures["by_hand_s"], figures["by_hand_agent_s"] = hand["total_s"], hand["agent_s"]
            figures["by_hand_checks_s"] = hand["checks_s"]
            figures["worker_start_s"] = await asyncio.to_thread(worker_start_s, rounds)
            figures["memory"] = await memory(options, system, driver, redis)
    finally:
        await redis.aclose()
    return figures


async def timed_phases(
    options: Options,
    system: System,
    driver: Driver,
    redis: aioredis.Redis,
    label: str,
    *,
    before_burst: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """One task at a time, then (after `before_burst`, untimed) `tasks` at once."""
    say(f"{label}: one task at a time, {options.repeat} runs")
    before = await redis_commands(redis)
    api_before = await api_requests(system)
    cpu_before = actor_cpu_s(system)
    singles = [await driver.one(f"bench: single #{i}") for i in range(options.repeat)]
    cpu_after = actor_cpu_s(system)
    per_task = (await redis_commands(redis) - before) / options.repeat
    api_after = await api_requests(system)
    api_per_task = {
        method: (count - api_before.get(method, 0.0)) / options.repeat
        for method, count in sorted(api_after.items())
    }
    if before_burst is not None:
        await before_burst()
    say(f"{label}: {options.tasks} tasks at once over {len(driver.burst)} projects")
    batch = await driver.many(options.tasks, "bench: batch", driver.burst)
    await wait_for(redis, FLOWS_KEY, 0, 60)
    return {
        **timing_figures(singles, batch),
        "redis_commands_per_task": per_task,
        "api_requests_per_task": api_per_task,
        "actor_cpu_ms_per_task": {
            actor: (cpu_after[actor] - cpu_before.get(actor, 0.0)) * 1000 / options.repeat
            for actor in sorted(cpu_after)
        },
    }


async def api_requests(system: System) -> dict[str, float]:
    """Requests the API served so far, by method (its `/metrics`; `/health` left out): each
    one is a database transaction (reads: one query with a cached credential, no commit)."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(system.metrics_urls["api"])).text
    counts: dict[str, float] = {}
    for name, labels, value in iter_families(text):
        if name == "orchestrator_http_requests_total" and labels.get("route") != "/health":
            method = labels.get("method", "?")
            counts[method] = counts.get(method, 0.0) + value
    return counts


def actor_cpu_s(system: System) -> dict[str, float]:
    """CPU seconds (user + system) each running actor process has used so far: its own
    work, not its children's (git, the workers and the checks they run)."""
    used = {}
    for actor, process in system.processes.items():
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(process.pid).cpu_times()
            used[actor] = times.user + times.system
    return used


async def redis_commands(redis: aioredis.Redis) -> int:
    """Commands the Redis server processed so far (every client: actors, workers, us)."""
    stats = await redis.info("stats")
    return int(stats["total_commands_processed"])


def _uss_kib(pid: int) -> int:
    with contextlib.suppress(psutil.Error):
        return int(psutil.Process(pid).memory_full_info().uss // 1024)
    return 0


async def pool_memory(system: System, redis: aioredis.Redis, size: int) -> dict[str, Any]:
    """Wait for the pool to be full; the memory of its idle warm workers."""
    registry = WorkerRegistry(redis)
    deadline = time.monotonic() + START_TIMEOUT_S
    started = time.perf_counter()
    warm = []
    while time.monotonic() < deadline:
        system.check()
        warm = [r for r in await registry.all() if r.status == "warm"]
        if len(warm) >= size:
            break
        await asyncio.sleep(0.1)
    fill_s = time.perf_counter() - started
    await asyncio.sleep(1.0)
    pids = [int(r.runtime_ref.split(":", 1)[0]) for r in warm]
    rss = [memory_kib(pid)["VmRSS"] for pid in pids]
    uss = [_uss_kib(pid) for pid in pids]
    return {
        "size": len(warm),
        "wanted": size,
        "fill_s": fill_s,
        "worker_rss_kib": statistics.median(rss) if rss else 0,
        "worker_uss_kib": statistics.median(uss) if uss else 0,
        "pool_rss_kib": sum(rss),
        "pool_uss_kib": sum(uss),
    }


async def guarded(options: Options, system: System) -> dict[str, Any]:
    """`measure`, stopped with the actor's log tail as the error when an actor dies."""
    run = asyncio.create_task(measure(options, system))
    while True:
        done, _ = await asyncio.wait({run}, timeout=1)
        if done:
            return run.result()
        try:
            system.check()
        except RuntimeError:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            raise


def timing_figures(singles: list[TaskRun], batch: list[TaskRun]) -> dict[str, Any]:
    """Medians and percentiles of the two timed phases."""

    def phase(runs: list[TaskRun]) -> dict[str, Any]:
        overheads = [r.overhead_s for r in runs]
        wall_s = max(r.ended for r in runs) - min(r.created for r in runs)
        segments: dict[str, float] = {}
        for label, start, end in SEGMENTS:
            values = [s for r in runs if (s := r.segment_s(start, end)) is not None]
            segments[label] = statistics.median(values) if values else float("nan")
        hops = [
            s - r.checks_s
            for r in runs
            if (s := r.segment_s("checks", "integrate")) is not None and r.check_runs == 1
        ]
        segments[CHECKS_HOPS] = statistics.median(hops) if hops else float("nan")
        return {
            "tasks": len(runs),
            "e2e_p50_s": statistics.median(r.e2e_s for r in runs),
            "agent_p50_s": statistics.median(r.agent_s for r in runs),
            "checks_p50_s": statistics.median(r.checks_s for r in runs),
            "overhead_p50_s": statistics.median(overheads),
            "overhead_p95_s": pct(overheads, 0.95),
            "wall_s": wall_s,
            "tasks_per_s": len(runs) / wall_s,
            "segments_p50_s": segments,
        }

    return {"single": phase(singles), "concurrent": phase(batch)}


async def memory(
    options: Options, system: System, driver: Driver, redis: aioredis.Redis
) -> dict[str, Any]:
    """RSS of the langgraph process with no flow (it ran every earlier task, so its code is
    loaded), then with `waiting` flows waiting."""
    pid = system.processes["langgraph"].pid
    await wait_for(redis, FLOWS_KEY, 0, 60)
    system.stop("worker-manager")
    system.stop("scaffolder")
    await asyncio.sleep(options.settle_s)
    idle = memory_kib(pid)
    size_before = checkpoint_bytes(system.data_dir)
    projects = await waiting_projects(driver, options.waiting)
    say(f"memory: {options.waiting} tasks in {len(projects)} projects, flows stop and wait")
    slots = asyncio.Semaphore(8)

    async def create(index: int) -> None:
        async with slots:
            project_id = projects[index // MAX_PARALLEL_TASKS]
            await driver.create(f"bench: waiting #{index}", project_id)

    started = time.perf_counter()
    await asyncio.gather(*(create(i) for i in range(options.waiting)))
    held = await wait_for(redis, WAITS_KEY, options.waiting, 60 + options.waiting * 0.5)
    settle_s = time.perf_counter() - started
    system.check()
    await asyncio.sleep(options.settle_s)
    loaded = memory_kib(pid)
    waits = await redis.hgetall(WAITS_KEY)
    steps = {json.loads(v)["step"] for v in waits.values()}
    return {
        "waiting": held,
        "wanted": options.waiting,
        "waiting_at": sorted(steps),
        "seconds_to_reach": settle_s,
        "rss_idle_kib": idle["VmRSS"],
        "rss_waiting_kib": loaded["VmRSS"],
        "peak_rss_kib": loaded["VmHWM"],
        "per_flow_kib": (loaded["VmRSS"] - idle["VmRSS"]) / max(held, 1),
        "checkpoint_bytes_per_flow": (checkpoint_bytes(system.data_dir) - size_before)
        / max(held, 1),
    }


async def waiting_projects(driver: Driver, waiting: int) -> list[str]:
    """Projects enough for `waiting` flows at once: a project runs at most
    `MAX_PARALLEL_TASKS` (its later tasks wait for a turn with no flow). The bench's own
    project first (its flows park at `create_worker`), then new ones (theirs park at
    `scaffold`: the scaffolder is stopped too)."""
    projects = [driver.project_id]
    while len(projects) * MAX_PARALLEL_TASKS < waiting:
        project = await driver.api.create_project(
            ProjectCreate(name=f"bench-waiting-{len(projects)}")
        )
        await driver.api.update_project(
            project.id, ProjectUpdate(parallel_tasks=MAX_PARALLEL_TASKS)
        )
        projects.append(project.id)
    return projects


def report(figures: dict[str, Any], redis_binary: str, elapsed_s: float) -> None:
    """The figures as a table."""
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    hop_ms = figures["bus_hop_ms"]
    floor_s = HOPS * hop_ms / 1000
    by_hand_s = figures["by_hand_s"]
    print(
        f"engineering task, built-in agent, actors as processes, API on SQLite, {redis_binary}; "
        f"{elapsed_s:.0f} s; {os.cpu_count()} CPUs, load average {load}"
    )
    print(
        f"baselines: bus hop {hop_ms:.2f} ms (x{HOPS} hops = {floor_s * 1000:.1f} ms); "
        f"by hand (clone + agent + checks) {by_hand_s * 1000:.0f} ms, "
        f"agent alone {figures['by_hand_agent_s'] * 1000:.0f} ms, "
        f"checks {figures['by_hand_checks_s'] * 1000:.0f} ms; a worker's interpreter "
        f"start and imports {figures['worker_start_s'] * 1000:.0f} ms"
    )
    first = figures["first_task"]
    print(
        f"first task of a new project (scaffold included): end to end {first['e2e_s']:.2f} s, "
        f"overhead {first['overhead_s']:.2f} s"
    )
    print(
        f"{'scenario':<16}{'e2e p50':>9}{'agent p50':>11}{'checks p50':>11}{'ovh p50':>9}"
        f"{'ovh p95':>9}"
        f"{'wall s':>8}{'tasks/s':>9}{'ovh/bus':>9}{'e2e/hand':>10}"
    )
    off, on = figures["pool_off"], figures["pool_on"]
    single, batch = off["single"], off["concurrent"]
    pool_size = figures["pool"]["size"]
    burst_size = figures.get("burst_pool", figures["pool"])["size"]
    projects = figures["options"]["projects"]
    rows = [
        (f"1 task (x{single['tasks']})", single),
        (f"{batch['tasks']} at once", batch),
        (f"pool {pool_size}: 1 task", on["single"]),
        (f"pool {burst_size}: {batch['tasks']}", on["concurrent"]),
    ]
    heavy = on.get("heavy")
    if heavy:
        rows.append((f"pool: {heavy['tasks']} in 1", heavy))
    for label, row in rows:
        print(
            f"{label:<16}{row['e2e_p50_s']:>8.2f}s{row['agent_p50_s']:>10.2f}s"
            f"{row['checks_p50_s']:>10.2f}s{row['overhead_p50_s']:>8.2f}s"
            f"{row['overhead_p95_s']:>8.2f}s"
            f"{row['wall_s']:>8.1f}{row['tasks_per_s']:>9.2f}"
            f"{row['overhead_p50_s'] / floor_s:>8.0f}x{row['e2e_p50_s'] / by_hand_s:>9.1f}x"
        )
    print(
        f"  '1 task': the bench's project, its checks the template's `make test`; "
        f"'{batch['tasks']} at once': a team's burst, the tasks spread over {projects} "
        f"projects ({-(-batch['tasks'] // projects)} each) declaring one cheap check "
        f"(`{BURST_CHECK}`)"
        + (
            f"; 'pool: {heavy['tasks']} in 1': {heavy['tasks']} tasks at once in the bench's one "
            "project, each integration in turn followed by `make test` again"
            if heavy
            else ""
        )
    )
    many_label = f"{batch['tasks']} at once"
    print(
        f"{'per step, median':<32}{'1 task':>10}{many_label:>14}"
        f"{'pool: 1 task':>14}{'pool: ' + many_label:>18}"
    )
    for label in [label for label, _, _ in SEGMENTS] + [CHECKS_HOPS]:
        cells = [
            phase["segments_p50_s"][label]
            for phase in (single, batch, on["single"], on["concurrent"])
        ]
        print(
            f"  {label:<30}{cells[0] * 1000:>8.0f}ms{cells[1] * 1000:>12.0f}ms"
            f"{cells[2] * 1000:>12.0f}ms{cells[3] * 1000:>16.0f}ms"
        )
    print(
        f"Redis commands per task (one at a time, every client, polls included): pool off "
        f"{off['redis_commands_per_task']:.0f}, pool on {on['redis_commands_per_task']:.0f}"
    )
    requests = on["api_requests_per_task"]
    print(
        "API requests per task (one at a time; each a database transaction): "
        + (", ".join(f"{m} {n:.1f}" for m, n in requests.items()) or "-")
        + f"; {sum(requests.values()):.1f} in all"
    )
    for label, phase in (("pool off", off), ("pool on", on)):
        cpu = phase["actor_cpu_ms_per_task"]
        print(
            f"actors' own CPU per task ({label}, one at a time, without git, workers and "
            f"checks): " + ", ".join(f"{a} {ms:.0f} ms" for a, ms in cpu.items())
            + f"; {sum(cpu.values()):.0f} ms in all"
        )  # fmt: skip
    pool = figures["pool"]
    print(
        f"warm pool: {pool['size']} of {pool['wanted']} workers ready {pool['fill_s']:.1f} s "
        f"after the manager's start; an idle warm worker: RSS "
        f"{pool['worker_rss_kib'] / 1024:.1f} MiB, USS {pool['worker_uss_kib'] / 1024:.1f} MiB; "
        f"the pool: RSS {pool['pool_rss_kib'] / 1024:.1f} MiB, "
        f"USS {pool['pool_uss_kib'] / 1024:.1f} MiB"
    )
    burst = figures.get("burst_pool")
    if burst is not None:
        print(
            f"burst pool: {burst['size']} of {burst['wanted']} warm workers ready "
            f"{burst['fill_s']:.1f} s after its start, before the burst; RSS "
            f"{burst['pool_rss_kib'] / 1024:.1f} MiB, USS {burst['pool_uss_kib'] / 1024:.1f} MiB"
        )
    mem = figures["memory"]
    print(
        f"langgraph RSS: {mem['rss_idle_kib'] / 1024:.1f} MiB with no flow, "
        f"{mem['rss_waiting_kib'] / 1024:.1f} MiB with {mem['waiting']} flows waiting at "
        f"{', '.join(mem['waiting_at']) or '-'} (peak {mem['peak_rss_kib'] / 1024:.1f} MiB): "
        f"{mem['per_flow_kib']:.1f} KiB per flow; checkpoints "
        f"{mem['checkpoint_bytes_per_flow'] / 1024:.1f} KiB per flow on disk; "
        f"{mem['seconds_to_reach']:.0f} s to create and park them"
    )
    if mem["waiting"] != mem["wanted"]:
        print(f"  only {mem['waiting']} of {mem['wanted']} flows reached their wait in time")
    for verdict in verdicts(figures):
        print(verdict)


def verdicts(figures: dict[str, Any]) -> list[str]:
    """The targets of issue 19, each with the figure measured against it."""
    on = figures["pool_on"]
    one = on["single"]["overhead_p50_s"]
    ratio = on["single"]["e2e_p50_s"] / figures["by_hand_s"]
    many = on["concurrent"]["overhead_p50_s"]
    count = on["concurrent"]["tasks"]
    burst_pool = figures.get("burst_pool", figures["pool"])
    checks = (
        (f"pool on, overhead p50 of one task {one * 1000:.0f} ms", one <= TARGET_OVERHEAD_S,
         f"<= {TARGET_OVERHEAD_S * 1000:.0f} ms"),
        (f"pool on, end to end / by hand {ratio:.2f}x", ratio <= TARGET_HAND_RATIO,
         f"<= {TARGET_HAND_RATIO}x"),
        (f"pool on, {count} at once (a burst over {figures['options']['projects']} projects, "
         f"on a pool of {burst_pool['size']} of {burst_pool['wanted']} warm), "
         f"overhead p50 {many:.2f} s", many <= TARGET_BATCH_OVERHEAD_S,
         f"<= {TARGET_BATCH_OVERHEAD_S:.0f} s"),
    )  # fmt: skip
    lines = [f"{'PASS' if ok else 'MISS'}  {text} (target {target})" for text, ok, target in checks]
    heavy = on.get("heavy")
    if heavy:
        lines.append(
            f"info  pool on, {heavy['tasks']} at once in one project with its full checks: "
            f"overhead p50 {heavy['overhead_p50_s']:.2f} s (waiting for the project's "
            "integration turn: one at a time, `make test` again after each merge)"
        )
    return lines


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Warnings and errors only from the libraries used in this process."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    yield


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every task completed and every flow reached its wait."""
    options = parse(argv)
    # SIGTERM (a timeout's) stops the run like Ctrl-C: the `finally` below stops every actor
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    run_context = bench_record.context()
    started = time.perf_counter()
    with (
        quiet_logs(),
        RedisServer() as redis_server,
        tempfile.TemporaryDirectory(prefix="bench-flow-") as tmp,
    ):
        system = System(Path(tmp) / "var", redis_server.url)
        try:
            figures = asyncio.run(guarded(options, system))
        finally:
            system.stop_all()
        binary = Path(redis_server.binary).name
    elapsed_s = time.perf_counter() - started
    figures["context"] = run_context
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        print(bench_record.context_line(run_context))
        report(figures, binary, elapsed_s)
    saved = bench_record.save("flow", text.getvalue(), figures)
    if options.as_json:
        print(json.dumps(figures, indent=2))
    else:
        print(text.getvalue(), end="")
        print(f"(figures in {saved})")
    return 0 if figures["memory"]["waiting"] == options.waiting else 1


if __name__ == "__main__":
    sys.exit(main())
