"""Job `check_app_health` with the real API, a real app under the real supervisor
(`supervise.py`, as infra-service runs local deploys) and the chat notifier: an app killed
from outside is reported down, then up once the supervisor restarted it, one message each."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from services.infra_service.deps import app_name_of
from services.scheduler.api import HttpSchedulerApi, MemorySchedulerApi
from services.scheduler.deps import SchedulerDeps
from services.scheduler.jobs import check_app_health
from services.scheduler.loop import Tick
from services.scheduler.metrics import SchedulerMetrics
from services.scheduler.probe import (
    HttpAppProbe,
    MemoryAppProbe,
    MemoryProbe,
    SupervisorRestarts,
)
from services.scheduler.settings import SchedulerSettings
from services.scheduler.workers import MemoryWorkerDirectory
from shared import registry
from shared.api_client import ApiClient, ConflictError, ForbiddenError
from shared.api_client.schemas import (
    DeployDTO,
    DeployHealth,
    DeployHealthReport,
    DeployOutcome,
    DeployRecord,
    ProjectUpdate,
)
from shared.chat import TaskNotifier
from shared.contracts import ProjectCreate, ProjectStatus, TaskCreate, TaskType
from shared.messaging import Bus
from shared.registry import Actor
from tests.api.conftest import (  # noqa: F401 - fixtures: the API on SQLite and PostgreSQL
    api,
    database,
    database_url,
    postgres_url,
)
from tests.support.api import ApiHarness
from tests.support.waiting import eventually

SUPERVISE = Path(__file__).parents[2] / "services/infra_service/playbooks/files/supervise.py"
SHA = "c" * 40
CHAT = 4242
TICK = Tick(job="check_app_health", number=1, interval_s=30)

APP = textwrap.dedent(
    """
    import os, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    if os.path.exists({hold!r}):
        sys.exit("held: refusing to start")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
    """
)
"""An app that serves every path with 200, and exits at start while the `hold` file exists
(so, killed from outside, it stays down until the test lets the supervisor bring it back)."""


class Sink:
    """Records every message sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    async def send(self, chat_id: int, text: str) -> int:
        self.sent.append((chat_id, text))
        return len(self.sent)

    async def edit(self, chat_id: int, message_id: int, text: str) -> None:
        self.sent.append((chat_id, text))

    async def typing(self, chat_id: int) -> None:
        """Nothing."""


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def supervise(root: Path, *args: str) -> dict[str, object]:
    """Run one command of the supervisor; its JSON report."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(root)}
    done = subprocess.run(
        [sys.executable, str(SUPERVISE), "--root", str(root), *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    report: dict[str, object] = json.loads(done.stdout)
    return report


@dataclass
class DeployedApp:
    """A project whose release runs under the supervisor on `port`."""

    root: Path
    name: str
    port: int
    hold: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """Kill the app's process group from outside (not through the supervisor)."""
        pid = int((self.root / "apps" / self.name / "app.pid").read_text())
        os.killpg(pid, signal.SIGKILL)

    async def silent(self) -> bool:
        return not await self.answers()

    async def answers(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(f"{self.url}/health")).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[DeployedApp]:
    """Set up by `start` below; stopped (daemon and app) at the end."""
    app = DeployedApp(tmp_path / "srv", "", 0, tmp_path / "hold")
    try:
        yield app
    finally:
        if app.name:
            supervise(app.root, "stop", app.name)


def start(app: DeployedApp, project_id: str) -> None:
    """Lay the project out as `deployctl.py release` does and start its supervisor."""
    app.name = app_name_of(project_id)
    app.port = free_port()
    app_dir = app.root / "apps" / app.name
    (app_dir / "src").mkdir(parents=True)
    (app_dir / "src" / "main.py").write_text(APP.format(hold=str(app.hold)))
    (app_dir / ".env").write_text("")
    service = {
        "command": [sys.executable, "main.py"],
        "cwd": "src",
        "env_file": ".env",
        "port": app.port,
        "host": "127.0.0.1",
        "commit": SHA,
    }
    (app_dir / "service.json").write_text(json.dumps(service))
    supervise(app.root, "start", app.name)


@dataclass
class World:
    """The API, the job's dependencies and a notifier of the `test` door."""

    harness: ApiHarness
    admin: ApiClient
    deps: SchedulerDeps
    redis: aioredis.Redis

    def notifier(self, sink: Sink, owner_id: int) -> TaskNotifier:
        async def chat_for_owner(owner: int) -> int | None:
            return CHAT if owner == owner_id else None

        return TaskNotifier(
            Bus(self.redis, actor=registry.Actor.TELEGRAM_BOT),
            self.redis,
            self.admin,
            sink,
            door="test",
            chat_for_owner=chat_for_owner,
        )

    async def release(self, project_id: str) -> DeployDTO:
        [release] = [
            r
            for r in (await self.admin.list_current_releases()).items
            if r.project_id == project_id
        ]
        return release

    async def tick(self) -> None:
        await check_app_health(self.deps, TICK)


@pytest.fixture
async def world(
    api: ApiHarness,  # noqa: F811 - the fixture imported above
    redis_client: aioredis.Redis,
    deployed: DeployedApp,
) -> AsyncIterator[World]:
    """The scheduler's job on a service credential, reading the supervisor's restarts."""
    service = api.client(api.service_key)
    admin = api.client(api.admin_key)
    deps = SchedulerDeps(
        redis=redis_client,
        publisher=Bus(redis_client, actor=Actor.SCHEDULER),
        api=HttpSchedulerApi(service),
        workers=MemoryWorkerDirectory(),
        probe=MemoryProbe(),
        settings=SchedulerSettings(),
        metrics=SchedulerMetrics.create(CollectorRegistry()),
        app_probe=HttpAppProbe(timeout_s=2.0),
        restarts=SupervisorRestarts(deployed.root / "apps", app_name_of),
    )
    try:
        yield World(api, admin, deps, redis_client)
    finally:
        await service.aclose()
        await admin.aclose()


async def active_project(harness: ApiHarness, owner_id: int, url: str | None) -> tuple[str, str]:
    """A project of `owner_id`, `active`, whose last deploy succeeded (serving `url`):
    (project id, task id)."""
    async with (
        harness.client(harness.admin_key) as admin,
        harness.client(harness.service_key) as service,
    ):
        project = await admin.create_project(ProjectCreate(name="shop"), owner_id=owner_id)
        for status in (
            ProjectStatus.SCAFFOLDING,
            ProjectStatus.SCAFFOLDED,
            ProjectStatus.DEPLOYING,
        ):
            await admin.update_project(project.id, ProjectUpdate(status=status))
        task = await service.create_task(TaskCreate(project_id=project.id, type=TaskType.DEPLOY))
        record = DeployRecord(sha=SHA, outcome=DeployOutcome.SUCCEEDED, url=url)
        await service.record_deploy(project.id, task.id, record)
        await admin.update_project(project.id, ProjectUpdate(status=ProjectStatus.ACTIVE))
        return project.id, task.id


async def test_an_app_killed_from_outside_is_reported_down_then_up_one_message_each(
    world: World, deployed: DeployedApp
) -> None:
    """Killed while it cannot start again: two failed probes report it down, the owner gets
    one message; the supervisor's restarts are counted; let back, it is reported up, and the
    owner gets one more message; ticks and notifier passes in between send nothing."""
    owner_id, _ = await world.harness.user(CHAT)
    project_id, _ = await active_project(world.harness, owner_id, None)
    start(deployed, project_id)
    async with world.harness.client(world.harness.service_key) as service:
        [task] = [r.task_id for r in (await service.list_current_releases()).items]
        record = DeployRecord(sha=SHA, outcome=DeployOutcome.SUCCEEDED, url=deployed.url)
        await service.record_deploy(project_id, task, record)
    await eventually(deployed.answers, timeout_s=30, what="the app answers")
    sink = Sink()
    notifier = world.notifier(sink, owner_id)

    await world.tick()
    up = await world.release(project_id)
    assert (up.health, up.health_changes, up.restarts) == (DeployHealth.UP, 0, 0)
    assert await notifier.announce_health() == 0  # serving from the start is no news

    deployed.hold.touch()
    deployed.kill()
    await eventually(deployed.silent, what="the app is down")
    await world.tick()
    assert (await world.release(project_id)).health == DeployHealth.UP  # one failure: not yet
    await world.tick()
    down = await world.release(project_id)
    assert (down.health, down.health_changes) == (DeployHealth.DOWN, 1)
    assert await notifier.announce_health() == 1
    await world.tick()
    assert await notifier.announce_health() == 0
    assert (await world.release(project_id)).health_changes == 1

    async def restarts_reported() -> bool:
        await world.tick()
        return ((await world.release(project_id)).restarts or 0) >= 1

    await eventually(restarts_reported, timeout_s=30, what="the supervisor's restarts")

    deployed.hold.unlink()

    async def back_up() -> bool:
        await world.tick()
        return (await world.release(project_id)).health == DeployHealth.UP

    await eventually(back_up, timeout_s=90, interval_s=0.5, what="the app is reported up")
    assert await notifier.announce_health() == 1
    assert await notifier.announce_health() == 0
    assert await world.notifier(Sink(), owner_id).announce_health() == 0  # a restarted bot
    await world.tick()
    assert await notifier.announce_health() == 0

    assert [chat for chat, _ in sink.sent] == [CHAT, CHAT]
    down_text, up_text = (text for _, text in sink.sent)
    assert "shop is down" in down_text
    assert deployed.url in down_text
    assert "shop is back up" in up_text
    final = await world.release(project_id)
    assert final.health_changes == 2
    assert final.restarts is not None
    assert final.restarts >= 1
    async with world.harness.client(world.harness.admin_key) as admin:
        [history] = (await admin.list_deploys(project_id)).items
    assert (history.health, history.restarts) == (DeployHealth.UP, final.restarts)


async def test_health_reports_are_for_services_and_serving_releases_only(
    api: ApiHarness,  # noqa: F811 - the fixture imported above
) -> None:
    """A user cannot report; a failed deploy is no release (409 naming `task_id`); a user
    lists only their own releases; the first `up` is no change, `down` and `up` are."""
    alice_id, alice = await api.user(1)
    bob_id, _ = await api.user(2)
    project_id, task_id = await active_project(api, alice_id, "http://127.0.0.1:1")
    await active_project(api, bob_id, "http://127.0.0.1:2")
    async with (
        api.client(alice) as a,
        api.client(api.service_key) as service,
    ):
        with pytest.raises(ForbiddenError):
            await a.report_deploy_health(
                project_id, task_id, DeployHealthReport(health=DeployHealth.DOWN)
            )
        failed = await service.create_task(TaskCreate(project_id=project_id, type=TaskType.DEPLOY))
        record = DeployRecord(sha=SHA, outcome=DeployOutcome.FAILED)
        await service.record_deploy(project_id, failed.id, record)
        with pytest.raises(ConflictError) as refused:
            await service.report_deploy_health(
                project_id, failed.id, DeployHealthReport(health=DeployHealth.DOWN)
            )
        assert [problem.field for problem in refused.value.fields] == ["task_id"]
        mine = (await a.list_current_releases()).items
        assert [r.task_id for r in mine] == [task_id]
        assert (await a.list_current_releases(owner_id=bob_id)).items == []
        changes = []
        for health in (DeployHealth.UP, DeployHealth.UP, DeployHealth.DOWN, DeployHealth.UP):
            report = DeployHealthReport(health=health, restarts=3)
            changes.append(
                (await service.report_deploy_health(project_id, task_id, report)).health_changes
            )
        assert changes == [0, 0, 1, 2]
        assert len((await service.list_current_releases()).items) == 2


async def test_the_job_reports_down_after_two_failures_once(
    deps: SchedulerDeps,
) -> None:
    """In-memory API and probe: one failure is nothing, two are `down`, reported once; a
    healthy probe reports `up` once; a release without a URL is not probed."""
    memory = deps.api
    assert isinstance(memory, MemorySchedulerApi)
    probe = MemoryAppProbe()
    deps = SchedulerDeps(**{**deps.__dict__, "app_probe": probe})
    base = {
        "sha": SHA,
        "kind": "deploy",
        "outcome": DeployOutcome.SUCCEEDED,
        "created_at": "2026-01-01T00:00:00Z",
    }
    memory.releases["p1"] = DeployDTO.model_validate(
        {**base, "id": 1, "project_id": "p1", "task_id": "t1", "url": "http://a:1"}
    )
    memory.releases["p2"] = DeployDTO.model_validate(
        {**base, "id": 2, "project_id": "p2", "task_id": "t2"}
    )
    for _ in range(4):
        await check_app_health(deps, TICK)
    probe.healthy_urls.add("http://a:1")
    for _ in range(2):
        await check_app_health(deps, TICK)
    assert [(task, r.health) for task, r in memory.health_reports] == [
        ("t1", DeployHealth.DOWN),
        ("t1", DeployHealth.UP),
    ]


def _sleeper() -> subprocess.Popen[bytes]:
    """A process standing for a running bot."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


async def test_a_bot_only_release_s_health_is_its_supervisor_s_process_state(
    deps: SchedulerDeps, tmp_path: Path
) -> None:
    """A release without a URL (a bot-only project) on the local server: `up` while the bot
    process of its service.json runs, `down` after two checks without it, `up` again once a
    new bot runs; a release of another commit (not this server's files) is left alone."""
    memory = deps.api
    assert isinstance(memory, MemorySchedulerApi)
    app_dir = tmp_path / "apps" / "p1"
    app_dir.mkdir(parents=True)
    service = {"env_file": ".env", "commit": SHA, "workers": [{"name": "bot", "command": []}]}
    (app_dir / "service.json").write_text(json.dumps(service))
    deps = SchedulerDeps(
        **{**deps.__dict__, "restarts": SupervisorRestarts(tmp_path / "apps", lambda p: p)}
    )
    base = {
        "kind": "deploy",
        "outcome": DeployOutcome.SUCCEEDED,
        "created_at": "2026-01-01T00:00:00Z",
    }
    memory.releases["p1"] = DeployDTO.model_validate(
        {**base, "sha": SHA, "id": 1, "project_id": "p1", "task_id": "t1"}
    )
    memory.releases["p2"] = DeployDTO.model_validate(  # no files of it here
        {**base, "sha": SHA, "id": 2, "project_id": "p2", "task_id": "t2"}
    )
    bot = _sleeper()
    try:
        (app_dir / "bot.pid").write_text(f"{bot.pid}\n")
        await check_app_health(deps, TICK)
        assert [r.health for _, r in memory.health_reports] == [DeployHealth.UP]
        memory.health_reports.clear()
        bot.kill()
        bot.wait()
        for _ in range(3):
            await check_app_health(deps, TICK)
        bot = _sleeper()
        (app_dir / "bot.pid").write_text(f"{bot.pid}\n")
        await check_app_health(deps, TICK)
    finally:
        bot.kill()
        bot.wait()
    assert [(task, r.health) for task, r in memory.health_reports] == [
        ("t1", DeployHealth.DOWN),
        ("t1", DeployHealth.UP),
    ]
