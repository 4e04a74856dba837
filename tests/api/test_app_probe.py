"""The api's probe of deployed apps: the latest succeeded deploy of each live project is asked
for `/health`; a real server answers, a closed port does not, an archived project leaves."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.api.app_probe import AppProbe
from services.api.db import Database, utc_now
from services.api.deploys.models import Deploy
from services.api.projects.models import Project
from services.api.tasks.models import Task
from shared.redis_server import free_port


@pytest.fixture
def healthy_app() -> Iterator[str]:
    """A real HTTP server answering 200 on /health (404 elsewhere)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


async def _deployed(database: Database, name: str, urls: list[str], status: str) -> str:
    async with database.sessionmaker() as session:
        project = Project(id=f"p-{name}", name=name, status=status, created_at=utc_now())
        session.add(project)
        await session.flush()
        for number, url in enumerate(urls):
            task = Task(
                id=f"t-{name}-{number}",
                project_id=project.id,
                type="deploy",
                status="completed",
                correlation_id=f"c-{name}-{number}",
                created_at=utc_now(),
                redrive_count=0,
            )
            session.add(task)
            await session.flush()
            session.add(
                Deploy(
                    project_id=project.id,
                    task_id=task.id,
                    sha="a" * 40,
                    kind="deploy",
                    outcome="succeeded",
                    url=url,
                    created_at=utc_now(),
                )
            )
        await session.commit()
    return project.id


def _gauge(project_id: str) -> float | None:
    return REGISTRY.get_sample_value("orchestrator_deployed_app_up", {"project": project_id})


async def test_probe_reports_up_down_and_forgets_archived_projects(
    database: Database, healthy_app: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    up = await _deployed(database, "up", [dead, healthy_app], "deployed")  # the latest wins
    down = await _deployed(database, "down", [healthy_app, dead], "deployed")
    archived = await _deployed(database, "gone", [healthy_app], "archived")
    probe = AppProbe(database, interval_s=60, timeout_s=2)
    assert await probe.probe_once() == {up: True, down: False}
    assert {key: value[0] for key, value in probe.last.items()} == {up: True, down: False}
    assert _gauge(up) == 1.0
    assert _gauge(down) == 0.0
    assert _gauge(archived) is None
    async with database.sessionmaker() as session:
        project = await session.get(Project, down)
        assert project is not None
        project.status = "archived"
        await session.commit()
    assert await probe.probe_once() == {up: True}
    assert _gauge(down) is None
