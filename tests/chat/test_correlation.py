"""One correlation id per chat turn: the turn's message to the PO worker, the task the
built-in PO creates in that turn, and the task's queue message all carry it."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from structlog.testing import capture_logs

from services.cli.chat import run_chat
from services.worker_wrapper.agents.base import (
    ActivitySink,
    AgentRequest,
    AgentResult,
)
from services.worker_wrapper.heartbeat import RegistryReporter
from services.worker_wrapper.service import WrapperService
from services.worker_wrapper.session import SessionStore
from services.worker_wrapper.settings import WrapperSettings
from shared import registry
from shared.api_client.schemas import DeployOutcome, DeployRecord
from shared.chat import ChatOptions
from shared.chat.po_profile import CORRELATION_ID_ENV
from shared.contracts import TaskCreate, TaskStatus, TaskType, WorkerInputMessage
from shared.messaging import Bus
from shared.registry import worker_record_key
from tests.chat.system import ChatSystem
from tests.support.chat import Script, start_chat
from tests.support.waiting import eventually

FAST = ChatOptions(answer_timeout_s=30, liveness_poll_s=0.2)
FINAL = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


async def test_a_chat_turn_s_id_is_carried_by_its_task_and_queue_message(
    po_system: ChatSystem, background: list[asyncio.Task[Any]]
) -> None:
    """Three turns, three ids, each in the turn's log line and on its message to the PO
    worker; the engineering task ("develop ...") and the deploy task ("deploy") have the id of
    the turn that created them, and so have their queue messages."""
    with capture_logs() as logs:
        await _converse(po_system, background)

    turn_ids = [e["correlation_id"] for e in logs if e["event"] == "chat_turn_sent"]
    assert len(set(turn_ids)) == len(turn_ids) == 3  # one id per turn, in its log line
    assert all(turn_id.startswith("cli-") for turn_id in turn_ids)
    published = {(e["queue"], e["correlation_id"]) for e in logs if e["event"] == "published"}
    worker_input = registry.get("worker:{id}:input").format(
        id=next(iter(po_system.manager.workers))
    )
    assert {(worker_input, turn_id) for turn_id in turn_ids} <= published
    async with po_system.api(po_system.admin_key) as api:
        tasks = list(reversed((await api.list_tasks()).items))
        schedules = [await api.get_task_schedule(task.id) for task in tasks]
    assert [(s.type, s.correlation_id) for s in schedules] == [
        (TaskType.ENGINEERING, turn_ids[1]),
        (TaskType.DEPLOY, turn_ids[2]),
    ]
    assert (registry.get("engineering:queue").name, turn_ids[1]) in published
    assert (registry.get("deploy:queue").name, turn_ids[2]) in published


async def test_rollback_and_cancel_keep_the_turn_s_id(
    po_system: ChatSystem, background: list[asyncio.Task[Any]]
) -> None:
    """A rollback asked in a turn (the PO's `rollback`, the chat's `/rollback`) is a deploy
    task with that turn's id; a cancel asked in a turn (`cancel`, `/cancel`) is logged by the
    API with that turn's id (and the task's own beside it)."""
    out: list[str] = []
    script = Script()
    chat = asyncio.create_task(
        run_chat(
            po_system.settings,
            po_system.redis_url,
            lines=script.lines(),
            write=out.append,
            telegram_id=4345,
            options=FAST,
            notify_poll_s=0.2,
        )
    )
    background.append(chat)

    async def said(line: str, pattern: str) -> None:
        before = len(out)
        await script.queue.put(line)
        await eventually(lambda: any(re.search(pattern, text) for text in out[before:]))

    with capture_logs() as logs:
        await said("create project till", r"Created project till")
        async with po_system.api(po_system.admin_key) as api:  # two releases to roll back between
            project = (await api.list_projects()).items[0]
            for sha in ("a" * 40, "b" * 40):
                body = TaskCreate(project_id=project.id, type=TaskType.DEPLOY, spec=None)
                task = await api.create_task(body)
                record = DeployRecord(sha=sha, outcome=DeployOutcome.SUCCEEDED)
                await api.record_deploy(project.id, task.id, record)
        await said("rollback", r"Rolling back till to the previous release: deploy task")
        await said("/rollback till aaaa", r"Rolling back till to commit aaaa: deploy task")

        async def deploys_ended() -> bool:  # else "cancel" would have several tasks to name
            async with po_system.api(po_system.admin_key) as api:
                tasks = (await api.list_tasks(limit=20)).items
            return all(t.status in FINAL for t in tasks if t.type == TaskType.DEPLOY)

        await eventually(deploys_ended, timeout_s=60, what="the four deploy tasks ended")
        po_system.langgraph.release.clear()
        await said("develop a /total endpoint", r"Development of till started")
        await said("cancel", r"Cancelled task [0-9a-f]{8} \(engineering")
        await said("develop a /tax endpoint", r"Development of till started")
        await said("/cancel", r"Cancelled task [0-9a-f]{8} \(engineering")
        po_system.langgraph.release.set()
        await script.queue.put("/quit")
        assert await asyncio.wait_for(chat, 30) == 0

    po_turns = [e["correlation_id"] for e in logs if e["event"] == "chat_turn_sent"]
    control_turns = [e["correlation_id"] for e in logs if e["event"] == "chat_control"]
    assert len(po_turns) == 5  # create, rollback, develop, cancel, develop
    assert len(control_turns) == 2  # /rollback, /cancel
    assert len(set(po_turns + control_turns)) == 7
    async with po_system.api(po_system.admin_key) as api:
        tasks = list(reversed((await api.list_tasks(limit=20)).items))
        schedules = {t.id: await api.get_task_schedule(t.id) for t in tasks}
    rollbacks = [s for s in schedules.values() if s.spec and s.spec.startswith("commit ")]
    assert [s.correlation_id for s in rollbacks] == [po_turns[1], control_turns[0]]
    developed = [s for s in schedules.values() if s.type == TaskType.ENGINEERING]
    assert [s.correlation_id for s in developed] == [po_turns[2], po_turns[4]]
    cancelled = [e for e in logs if e["event"] == "task_cancelled"]
    assert [(e["task_id"], e["correlation_id"]) for e in cancelled] == [
        (developed[0].id, po_turns[3]),
        (developed[1].id, control_turns[1]),
    ]
    assert [e["task_correlation_id"] for e in cancelled] == [po_turns[2], po_turns[4]]


async def _converse(po_system: ChatSystem, background: list[asyncio.Task[Any]]) -> None:
    """create project, develop, deploy: three turns, each answered, then /quit."""
    local = start_chat(po_system, telegram_id=4343)
    out, script, chat = local.out, local.script, local.task
    background.append(chat)
    await script.queue.put("create project shop")
    await eventually(lambda: any("Created project shop" in text for text in out))
    await script.queue.put("develop a /hello endpoint")
    await eventually(lambda: any(re.search(r"commit: [0-9a-f]{40}", t) for t in out))
    await script.queue.put("deploy")
    await eventually(lambda: any("URL: " in text for text in out))
    await script.queue.put("/quit")
    assert await asyncio.wait_for(chat, 20) == 0


class RecordingAgent:
    """An agent that answers at once and keeps the requests it got."""

    name = "recording"
    supports_sessions = False

    def __init__(self) -> None:
        self.requests: list[AgentRequest] = []

    async def run(self, request: AgentRequest, on_activity: ActivitySink) -> AgentResult:
        self.requests.append(request)
        return AgentResult(status="success", response="ok")


async def test_the_worker_wrapper_hands_the_turn_s_id_to_its_agent(
    redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """The real wrapper service, on the real bus: the agent's request carries the
    correlation id of the input message (which the built-in PO gives its tasks)."""
    settings = WrapperSettings(
        id="w-corr",
        redis_url="redis://unused",
        registry_key=worker_record_key("w-corr"),
        workspace=tmp_path,
        session_dir=tmp_path / "session",
        profile="po",
    )
    bus = Bus(redis_client, actor=registry.Actor.WORKER_WRAPPER)
    agent = RecordingAgent()
    service = WrapperService(
        settings=settings,
        bus=bus,
        agent=agent,
        reporter=RegistryReporter(redis_client, settings.registry_key),
        sessions=SessionStore(settings.session_dir, adapter="builtin", ttl_s=60),
    )
    stream = registry.get("worker:{id}:input").format(id=settings.id)
    consumer = bus.consumer(stream, service.handle_input, concurrency=1, block_ms=100)
    await consumer.ensure_groups()
    message = WorkerInputMessage(request_id="cli-turn-7", prompt="deploy", timeout=30)
    await Bus(redis_client, actor=registry.Actor.TELEGRAM_BOT).publish(
        stream, message, correlation_id="cli-turn-7"
    )
    running = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: len(agent.requests) == 1)
    finally:
        consumer.stop()
        await asyncio.wait_for(running, 10)
    [request] = agent.requests
    assert request.correlation_id == "cli-turn-7"
    assert request.env[CORRELATION_ID_ENV] == "cli-turn-7"  # for `orchestrator task create`
