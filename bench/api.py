"""Benchmark of the REST API: `python bench/api.py` (or `make bench`).

The API runs as users run it: `python -m services.api` (uvicorn, one process, access log
off, log level warning) with its outbox relay publishing to a private redis-server started
here. For each database (SQLite file; PostgreSQL when reachable, in a database created for
the run and dropped after) it measures, with CONCURRENCY clients on keep-alive connections
for SCENARIO_S seconds each:

- `GET /health`: the floor (uvicorn + FastAPI, no credential, no database);
- `POST /api/tasks`: authentication, project check, budget check, the task's turn, task row +
  outbox row in one commit, and the relay publishing the row to Redis;
- `GET /api/tasks/{id}`: authentication (cached for `api.auth_cache_ttl_s` once looked up)
  and one joined read on the driver's own connection, without a session
  (`services/api/direct.py`);
- `GET /api/tasks?status=running`: the poll of a console or the scheduler, newest first.

Each database runs twice: empty, then with `--seed` (100,000) finished tasks of the bench
project and user and as many published outbox rows inserted before the API starts, so the
reads, the create, the poll and the outbox relay show whether they grow with finished work.
The verdicts of issue 19 come last: a task read at most 2x and a task create at most 4x the
server CPU per request of `/health`.
The text and the figures (JSON) are also written to `bench/results/`.

It prints requests/s and p50/p99 latency. Client and server share the machine's cores, so
the figures are a lower bound of what the server alone would do; the API process's CPU time
per request (psutil) is the figure that holds on a busy machine. Bounded: under two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import httpx
import psutil
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from services.api.auth.service import AuthService
from services.api.main import prepare_database
from services.api.outbox.models import OutboxMessage
from services.api.projects.models import Project
from services.api.tasks.models import Task
from services.api.users.models import User
from shared import bench_record
from shared.contracts import ProjectStatus, new_id
from shared.redis_server import RedisServer, free_port
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 16
SCENARIO_S = 5.0
START_TIMEOUT_S = 300.0
"""A loaded machine starts a Python process slowly."""
READ_TARGET = 2.0
CREATE_TARGET = 4.0
SEED_CHUNK = 5000
PARALLEL_TASKS = 1_000_000
"""The bench project's turns: every created task is released at once, so each create writes
its outbox row and the relay publishes it (the full cost of a create that starts a flow)."""
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@dataclass
class Figures:
    """One scenario's outcome."""

    name: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    server_cpu_s: float
    """CPU time the API process spent in the scenario (user + system)."""

    @property
    def cpu_ms(self) -> float:
        """Server CPU per request, ms."""
        return 1000 * self.server_cpu_s / max(1, self.requests)

    def summary(self) -> dict[str, float | int | str]:
        """The figures without the samples (for the JSON file)."""
        ordered = sorted(self.latencies_ms) or [0.0]
        return {
            "name": self.name,
            "requests": self.requests,
            "errors": self.errors,
            "req_per_s": self.requests / self.seconds,
            "p50_ms": statistics.median(ordered),
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            "server_cpu_ms_per_req": self.cpu_ms,
        }

    def line(self) -> str:
        """A printable row."""
        ordered = sorted(self.latencies_ms) or [0.0]
        p50 = statistics.median(ordered)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        rate = self.requests / self.seconds
        cpu_ms = self.cpu_ms
        return (
            f"  {self.name:<30} {rate:>7.0f} req/s  p50 {p50:>7.1f} ms  p99 {p99:>7.1f} ms  "
            f"server CPU {cpu_ms:>5.2f} ms/req  ({self.requests} req, {self.errors} errors)"
        )


async def _seed(settings: Settings, finished: int) -> tuple[str, str]:
    """Migrate, create an admin key, a user and a project, and `finished` completed tasks
    with their published outbox rows; returns (key, project id)."""
    database = await prepare_database(settings)
    try:
        async with database.sessionmaker() as session:
            user = User(telegram_id=random.randint(1, 2**40), is_admin=False)
            session.add(user)
            await session.flush()
            project = Project(
                id=new_id(),
                name="bench",
                status=ProjectStatus.DRAFT.value,
                owner_id=user.id,
                parallel_tasks=PARALLEL_TASKS,
            )
            session.add(project)
            _, key = await AuthService(session).create_key("bench", "admin", None)
            await session.commit()
            project_id, user_id = project.id, user.id
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        for start in range(0, finished, SEED_CHUNK):
            count = min(SEED_CHUNK, finished - start)
            tasks = [
                {
                    "id": new_id(),
                    "project_id": project_id,
                    "user_id": user_id,
                    "type": "engineering",
                    "status": "completed",
                    "spec": "seeded",
                    "correlation_id": new_id(),
                    "created_at": now - dt.timedelta(seconds=finished - start - i),
                    "redrive_count": 0,
                }
                for i in range(count)
            ]
            outbox = [
                {
                    "stream": "engineering:queue",
                    "message_type": "EngineeringMessage",
                    "payload": "{}",
                    "correlation_id": row["correlation_id"],
                    "created_at": row["created_at"],
                    "published_at": now,
                    "attempts": 1,
                }
                for row in tasks
            ]
            async with database.sessionmaker() as session:
                await session.execute(insert(Task), tasks)
                await session.execute(insert(OutboxMessage), outbox)
                await session.commit()
        return key, project_id
    finally:
        await database.close()


def _start_api(database_url: str, redis_url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The API as a process, its output in `log`; returns it and its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "ORCHESTRATOR_DATABASE_URL": database_url,
        "ORCHESTRATOR_REDIS_URL": redis_url,
        "ORCHESTRATOR_API__PORT": str(port),
        "ORCHESTRATOR_LOG_LEVEL": "WARNING",
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.api"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the API did not start within {START_TIMEOUT_S:.0f} s")


async def _scenario(
    name: str, server: psutil.Process, request: Callable[[], Awaitable[httpx.Response]]
) -> Figures:
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + SCENARIO_S

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            response = await request()
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code >= 400:
                errors += 1

    cpu_before = server.cpu_times()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed_s = time.perf_counter() - started
    cpu_after = server.cpu_times()
    cpu_s = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    return Figures(name, len(latencies), errors, elapsed_s, latencies, cpu_s)


async def _run_backend(
    label: str, database_url: str, redis_url: str, log_dir: Path, finished: int = 0
) -> list[Figures]:
    key, project_id = await _seed(Settings(database_url=database_url), finished)
    if finished:
        label = f"{label}+{finished // 1000}k"
    log = log_dir / f"api-{label}.log"
    process, url = _start_api(database_url, redis_url, log)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    headers = {"Authorization": f"Bearer {key}"}
    task_ids: list[str] = []
    server = psutil.Process(process.pid)
    try:
        async with httpx.AsyncClient(
            base_url=url, headers=headers, limits=limits, timeout=60
        ) as client:
            body = {"project_id": project_id, "type": "engineering", "spec": "bench"}

            async def create() -> httpx.Response:
                response = await client.post("/api/tasks", json=body)
                if response.status_code == 201:
                    task_ids.append(response.json()["id"])
                return response

            async def read() -> httpx.Response:
                return await client.get(f"/api/tasks/{random.choice(task_ids)}")

            results = [
                await _scenario(f"{label} GET /health", server, lambda: client.get("/health")),
                await _scenario(f"{label} POST /api/tasks", server, create),
                await _scenario(f"{label} GET /api/tasks/{{id}}", server, read),
                await _scenario(
                    f"{label} GET /api/tasks?status=running",
                    server,
                    lambda: client.get("/api/tasks", params={"status": "running", "limit": 50}),
                ),
            ]
    except httpx.TransportError as error:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        code = process.poll()
        raise RuntimeError(
            f"{label}: a request failed ({error!r}); the API "
            + ("is still running" if code is None else f"exited with {code}")
            + "; its last output:\n"
            + "\n".join(tail)
        ) from error
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return results


async def _pg_database() -> str | None:
    """A fresh PostgreSQL database for the run, or None when no server answers."""
    base = make_url(PG_URL)
    name = f"api_bench_{uuid.uuid4().hex[:10]}"
    dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        connection = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return base.set(database=name).render_as_string(hide_password=False)


async def _drop_pg(url: str) -> None:
    base = make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(base, timeout=3)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    finally:
        await connection.close()


def verdicts(rows: list[Figures]) -> list[str]:
    """Server CPU per request of a task read and a task create against /health's, per run."""
    lines = []
    runs: dict[str, dict[str, Figures]] = {}
    for row in rows:
        run, _, scenario = row.name.partition(" ")
        runs.setdefault(run, {})[scenario] = row
    for run, found in runs.items():
        floor = found["GET /health"].cpu_ms
        for scenario, target in (
            ("GET /api/tasks/{id}", READ_TARGET),
            ("POST /api/tasks", CREATE_TARGET),
        ):
            ratio = found[scenario].cpu_ms / floor if floor else float("inf")
            verdict = "PASS" if ratio <= target else "MISS"
            lines.append(
                f"{verdict}  {run}: {scenario} server CPU {ratio:.1f}x /health "
                f"(target <= {target:g}x)"
            )
    return lines


async def run(finished: int) -> tuple[list[Figures], list[str]]:
    """Every backend, empty and with `finished` tasks; the rows and the printed lines. A
    backend whose API failed is reported in the lines (with the API's last output) and the
    others still run."""
    rows: list[Figures] = []
    notes: list[str] = []
    with RedisServer() as redis, tempfile.TemporaryDirectory() as tmp:
        for count in sorted({0, finished}):
            say(f"sqlite, {count} finished tasks")
            db_file = Path(tmp) / f"bench-{count}.db"
            try:
                rows += await _run_backend(
                    "sqlite", f"sqlite+aiosqlite:///{db_file}", redis.url, Path(tmp), count
                )
            except RuntimeError as error:
                notes.append(f"  FAILED {error}")
        for count in sorted({0, finished}):
            pg_url = await _pg_database()
            if pg_url is None:
                notes.append("  postgres: no server reachable, skipped")
                break
            say(f"postgres, {count} finished tasks")
            try:
                rows += await _run_backend("postgres", pg_url, redis.url, Path(tmp), count)
            except RuntimeError as error:
                notes.append(f"  FAILED {error}")
            finally:
                await _drop_pg(pg_url)
    return rows, notes


def say(text: str) -> None:
    """Progress of the run, on stderr."""
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run every backend and print the figures; 1 when a request failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=100_000, help="finished tasks (100000)")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error("--seed must be 0 or more")
    info = bench_record.context()
    rows, notes = asyncio.run(run(args.seed))
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        print(bench_record.context_line(info))
        print(
            f"REST API, uvicorn as `python -m services.api`, {CONCURRENCY} concurrent clients, "
            f"{SCENARIO_S:.0f} s per scenario, {os.cpu_count()} CPUs shared with the clients"
        )
        for row in rows:
            print(row.line())
        for note in notes:
            print(note)
        for line in verdicts(rows):
            print(line)
    figures = {"context": info, "seed": args.seed, "rows": [row.summary() for row in rows]}
    saved = bench_record.save("api", text.getvalue(), figures)
    print(text.getvalue(), end="")
    print(f"(figures in {saved})")
    failed = any(row.errors for row in rows) or any("FAILED" in note for note in notes)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
