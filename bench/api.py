"""Benchmark of the REST API: `python bench/api.py` (or `make bench`).

The API runs as users run it: `python -m services.api` (uvicorn, one process, access log
off, log level warning) with its outbox relay publishing to a private redis-server started
here. For each database (SQLite file; PostgreSQL when reachable, in a database created for
the run and dropped after) it measures, with CONCURRENCY clients on keep-alive connections
for SCENARIO_S seconds each:

- `GET /health`: the floor (uvicorn + FastAPI, no credential, no database);
- `POST /api/tasks`: authentication, project check, task row + outbox row in one commit;
- `GET /api/tasks/{id}`: authentication and one joined read.

It prints requests/s and p50/p99 latency. Client and server share the machine's cores, so
the figures are a lower bound of what the server alone would do; the API process's CPU time
per request (psutil) is the figure that holds on a busy machine. Bounded: under two minutes.
"""

from __future__ import annotations

import asyncio
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
from sqlalchemy.engine import make_url

from services.api.auth.service import AuthService
from services.api.main import prepare_database
from services.api.projects.models import Project
from services.api.users.models import User
from shared.contracts import ProjectStatus, new_id
from shared.redis_server import RedisServer, free_port
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 16
SCENARIO_S = 5.0
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

    def line(self) -> str:
        """A printable row."""
        ordered = sorted(self.latencies_ms) or [0.0]
        p50 = statistics.median(ordered)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        rate = self.requests / self.seconds
        cpu_ms = 1000 * self.server_cpu_s / max(1, self.requests)
        return (
            f"  {self.name:<30} {rate:>7.0f} req/s  p50 {p50:>7.1f} ms  p99 {p99:>7.1f} ms  "
            f"server CPU {cpu_ms:>5.2f} ms/req  ({self.requests} req, {self.errors} errors)"
        )


async def _seed(settings: Settings) -> tuple[str, str]:
    """Migrate, create an admin key, a user and a project; returns (key, project id)."""
    database = await prepare_database(settings)
    try:
        async with database.sessionmaker() as session:
            user = User(telegram_id=random.randint(1, 2**40), is_admin=False)
            session.add(user)
            await session.flush()
            project = Project(
                id=new_id(), name="bench", status=ProjectStatus.DRAFT.value, owner_id=user.id
            )
            session.add(project)
            _, key = await AuthService(session).create_key("bench", "admin", None)
            await session.commit()
            return key, project.id
    finally:
        await database.close()


def _start_api(database_url: str, redis_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "ORCHESTRATOR_DATABASE_URL": database_url,
        "ORCHESTRATOR_REDIS_URL": redis_url,
        "ORCHESTRATOR_API__PORT": str(port),
        "ORCHESTRATOR_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.api"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the API did not start within 60 s")


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


async def _run_backend(label: str, database_url: str, redis_url: str) -> list[Figures]:
    key, project_id = await _seed(Settings(database_url=database_url))
    process, url = _start_api(database_url, redis_url)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    headers = {"Authorization": f"Bearer {key}"}
    task_ids: list[str] = []
    server = psutil.Process(process.pid)
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:
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
            ]
    finally:
        process.terminate()
        process.wait(timeout=20)
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


async def main() -> None:
    """Run every backend and print the figures."""
    print(
        f"REST API, uvicorn as `python -m services.api`, {CONCURRENCY} concurrent clients, "
        f"{SCENARIO_S:.0f} s per scenario, {os.cpu_count()} CPUs shared with the clients"
    )
    with RedisServer() as redis, tempfile.TemporaryDirectory() as tmp:
        figures = await _run_backend(
            "sqlite", f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", redis.url
        )
        for row in figures:
            print(row.line())
        pg_url = await _pg_database()
        if pg_url is None:
            print("  postgres: no server reachable, skipped")
            return
        try:
            for row in await _run_backend("postgres", pg_url, redis.url):
                print(row.line())
        finally:
            await _drop_pg(pg_url)


if __name__ == "__main__":
    asyncio.run(main())
