"""Benchmark of the web console: `python bench/console.py`.

Server time per page: the API application (the one `orchestrator up` serves, console
included) handles requests in this process through httpx's ASGI transport, on a SQLite
file seeded with one user, 60 projects (25 to a page) with a deploy each, and 1,000 tasks
in one of them. For each page it times REQUESTS sequential requests and prints p50 and p95
in milliseconds, and each page's p50 as a multiple of the `/health` floor measured in the
same run (the cheapest route: no credential, no database), so the ratios hold on a slower
or busier machine while the absolute figures do not. No network, no Redis: the pages read
their data from the database; the task page's live progress is a separate event stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx

from services.api.app import create_app
from services.api.auth.service import AuthService
from services.api.console.router import COOKIE
from services.api.console.sessions import ConsoleSessions
from services.api.db import Database, utc_now
from services.api.deploys.models import Deploy
from services.api.migrate import upgrade
from services.api.projects.models import Project
from services.api.tasks.models import Task
from services.api.users.models import User
from shared import bench_record
from shared.contracts import new_id
from shared.git import LocalGitProvider
from shared.settings import ConsoleSettings

REQUESTS = 200
PROJECTS = 60
TASKS = 1000


async def seed(database: Database) -> tuple[str, str, str]:
    """A user with a console session, projects with deploys, 1,000 tasks in one project;
    returns the session secret, the big project's id and one of its task ids."""
    async with database.sessionmaker() as session:
        user = User(telegram_id=1, is_admin=False)
        session.add(user)
        await session.flush()
        _, key = await AuthService(session).create_key("bench", "user", user.id)
        secret, _ = await ConsoleSessions(session, ConsoleSettings()).sign_in(key)
        now = utc_now()
        projects = []
        for number in range(PROJECTS):
            project = Project(
                id=new_id(),
                name=f"p{number}",
                status="active",
                owner_id=user.id,
                repository_url=f"file:///repos/p{number}.git",
                created_at=now - timedelta(seconds=number),
            )
            projects.append(project)
        session.add_all(projects)
        await session.flush()
        tasks = []
        for number in range(TASKS):
            tasks.append(
                Task(
                    id=new_id(),
                    project_id=projects[0].id,
                    user_id=user.id,
                    type="engineering",
                    status="completed",
                    spec=f"add a /e{number} endpoint",
                    result={"commit_sha": f"{number:040x}", "branch": "main"},
                    correlation_id=new_id(),
                    created_at=now - timedelta(seconds=number),
                    redrive_count=0,
                )
            )
        for project in projects:
            deploy_task = Task(
                id=new_id(),
                project_id=project.id,
                user_id=user.id,
                type="deploy",
                status="completed",
                correlation_id=new_id(),
                created_at=now,
                redrive_count=0,
            )
            tasks.append(deploy_task)
        session.add_all(tasks)
        await session.flush()
        deploys = [
            Deploy(
                project_id=task.project_id,
                task_id=task.id,
                sha="a" * 40,
                kind="deploy",
                outcome="succeeded",
                url="http://127.0.0.1:10000",
                created_at=now,
                finished_at=now,
            )
            for task in tasks[TASKS:]
        ]
        session.add_all(deploys)
        await session.commit()
        return secret, projects[0].id, tasks[TASKS // 2].id


async def timed(client: httpx.AsyncClient, path: str) -> list[float]:
    """REQUESTS sequential GETs of `path`: each one's time in ms (after a warm-up)."""
    for _ in range(5):
        (await client.get(path)).raise_for_status()
    times = []
    for _ in range(REQUESTS):
        start = time.perf_counter()
        answer = await client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        answer.raise_for_status()
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


async def main() -> None:
    info = bench_record.context()
    with tempfile.TemporaryDirectory() as tmp:
        database = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        try:
            await upgrade(database)
            secret, project_id, task_id = await seed(database)
            # the repositories are read as on a real system (none exists here: the lookup
            # of the project page's commits and the task page's diff is timed, not git log)
            app = create_app(database, git=LocalGitProvider(Path(tmp) / "repos"))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench", cookies={COOKIE: secret}
            ) as client:
                pages = {
                    "/health (floor)": "/health",
                    f"project list ({PROJECTS} projects, 25/page)": "/console/",
                    f"project page ({TASKS} tasks, 25/page)": f"/console/projects/{project_id}",
                    f"task page ({TASKS} tasks in db)": f"/console/tasks/{task_id}",
                }
                figures = {name: await timed(client, path) for name, path in pages.items()}
        finally:
            await database.close()
    floor = statistics.median(figures["/health (floor)"])
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        print(bench_record.context_line(info))
        print(f"server time per page, {REQUESTS} sequential requests each (SQLite, in-process)")
        print(f"{'page':44} {'p50 ms':>8} {'p95 ms':>8} {'p50 / floor':>12}")
        for name, times in figures.items():
            median = statistics.median(times)
            print(f"{name:44} {median:8.2f} {p95(times):8.2f} {median / floor:11.1f}x")
    timing = {
        name: {"p50_ms": statistics.median(times), "p95_ms": p95(times)}
        for name, times in figures.items()
    }
    saved = bench_record.save("console", text.getvalue(), {"context": info, "pages": timing})
    print(text.getvalue(), end="")
    print(f"(figures in {saved})")


if __name__ == "__main__":
    asyncio.run(main())
