"""Claude as the Product Owner: a free-text chat message → the real `claude` in the PO worker
→ the scripted model runs `orchestrator project create` and `task create` with the worker's
user-scoped token → the project and task exist, and the model's reply reaches the chat."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from services.worker_manager.local_runtime import LocalProcessRuntime
from services.worker_manager.main import run_worker_manager
from services.worker_manager.settings import WorkerManagerSettings
from shared.chat import ChatOptions
from tests.agents.fake_models import ModelScript, Reply, ToolCall, serve_anthropic, session_of
from tests.chat.system import ChatSystem, chat_system
from tests.chat.test_real_po_worker import manager_system_settings
from tests.support.agents import PLANTED_KEY, cli_path
from tests.support.chat import start_chat
from tests.support.waiting import eventually

MANAGER_ID = "agents-po-test-manager"
ACT_AS_USER = (
    'export ORCHESTRATOR_API__URL="$PO_API_URL" ORCHESTRATOR_API__KEY="$PO_API_TOKEN" && '
    "id=$(orchestrator project create garden --description 'plants' --json "
    "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"id\"])') && "
    'orchestrator task create "$id" --type engineering --spec "a page listing plants" --json'
)
"""What the PO's instructions tell it to do, as one shell command of the scripted model."""


@pytest.fixture
async def claude_po_system(
    tmp_path: Path,
    redis_url: str,
    redis_client: aioredis.Redis,
    empty_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[ChatSystem, ModelScript]]:
    """The API, the real worker-manager running `claude` (scripted model), no venv on PATH."""
    claude = cli_path("claude")
    script = ModelScript(
        [
            Reply(text="Setting that up.", tools=(ToolCall("Bash", {"command": ACT_AS_USER}),)),
            Reply(text="Created project garden and a task for a page listing plants."),
            Reply(text="You asked me for a garden website; its task is queued."),
        ]
    )
    venv_bin = str(Path(sys.executable).parent)
    path = [part for part in os.environ.get("PATH", "").split(":") if part and part != venv_bin]
    with serve_anthropic(script) as fake:
        monkeypatch.setenv("PATH", ":".join(path) or "/usr/bin:/bin")
        monkeypatch.setenv("HOME", str(empty_home))
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", PLANTED_KEY)
        data_dir = tmp_path / "workers"
        settings = WorkerManagerSettings(
            data_dir=data_dir,
            adapter="cli",
            claude_command=[str(claude)],
            claude_max_retries=1,
            manager_id=MANAGER_ID,
            monitor_interval_s=0.2,
            heartbeat_interval_s=0.5,
            idle_timeout_s=0.0,
            start_timeout_s=60.0,
        )
        async with chat_system(tmp_path, redis_url, redis_client, fake_manager=False) as system:
            manager = asyncio.create_task(
                run_worker_manager(
                    manager_system_settings(system),
                    redis_client,
                    redis_url=redis_url,
                    manager_settings=settings,
                )
            )
            try:
                yield system, script
            finally:
                manager.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await manager
                runtime = LocalProcessRuntime(data_dir)
                for ref in (await runtime.list_owned(MANAGER_ID)).values():
                    await runtime.stop(ref, grace_s=0)


@pytest.mark.slow
async def test_claude_po_creates_the_project_and_task_from_free_text(
    claude_po_system: tuple[ChatSystem, ModelScript],
) -> None:
    """Free text in the chat; the real CLI runs `orchestrator` (found on its PATH without the
    virtualenv) with the PO's scoped token; the model's answer is the chat's reply."""
    system, script = claude_po_system
    local = start_chat(
        system, telegram_id=7117, options=ChatOptions(answer_timeout_s=90, liveness_poll_s=0.3)
    )
    out, lines, chat = local.out, local.script, local.task
    try:
        await lines.queue.put("I'd like a small website about my garden that lists my plants")
        await eventually(
            lambda: any("Created project garden and a task" in text for text in out),
            timeout_s=90,
        )
        await lines.queue.put(None)
        assert await asyncio.wait_for(chat, 30) == 0
    finally:
        chat.cancel()
        await asyncio.gather(chat, return_exceptions=True)
    async with system.api() as api:
        user = await api.find_user(7117)
        assert user is not None
        projects = await api.list_projects(owner_id=user.id)
        tasks = await api.list_tasks(owner_id=user.id)
    assert [p.name for p in projects.items] == ["garden"]
    assert [(t.type.value, t.spec) for t in tasks.items] == [
        ("engineering", "a page listing plants")
    ]
    first_prompt = str(script.requests[0]["messages"])
    assert "a small website about my garden" in first_prompt
    for text in out:
        assert PLANTED_KEY not in text
        assert system.admin_key not in text


@pytest.mark.slow
async def test_a_second_message_resumes_the_claude_po_session(
    claude_po_system: tuple[ChatSystem, ModelScript],
) -> None:
    """The second chat message runs `claude --resume <session of the first answer>`: the
    model's request for it belongs to the first message's session (the session id the CLI
    sends with each request) and carries the first exchange; no second project is made."""
    system, script = claude_po_system
    local = start_chat(
        system, telegram_id=7118, options=ChatOptions(answer_timeout_s=90, liveness_poll_s=0.3)
    )
    out, lines, chat = local.out, local.script, local.task
    try:
        await lines.queue.put("I'd like a small website about my garden that lists my plants")
        await eventually(
            lambda: any("Created project garden and a task" in text for text in out),
            timeout_s=90,
        )
        first_requests = len(script.requests)
        await lines.queue.put("What did I ask you for?")
        await eventually(
            lambda: any("You asked me for a garden website" in text for text in out),
            timeout_s=90,
        )
        await lines.queue.put(None)
        assert await asyncio.wait_for(chat, 30) == 0
    finally:
        chat.cancel()
        await asyncio.gather(chat, return_exceptions=True)
    assert script.conversation_requests == 3
    earlier = [body for body in script.requests[:first_requests] if body.get("tools")]
    later = [body for body in script.requests[first_requests:] if body.get("tools")]
    assert later, "the second message reached no conversation request"
    # one session for the first message's two requests, and the second message's request
    # is in it: the PO worker passed `--resume <that session>` (a fresh run gets a new id)
    first_sessions = {session_of(body) for body in earlier}
    assert len(first_sessions) == 1
    assert None not in first_sessions
    assert {session_of(body) for body in later} == first_sessions
    history = str(later[-1]["messages"])
    # a fresh session would start from the second message alone: the first exchange is there
    # only because the CLI resumed the first answer's session
    assert "a small website about my garden" in history
    assert "Setting that up." in history
    assert "Created project garden and a task" in history
    assert "What did I ask you for?" in history
    async with system.api() as api:
        user = await api.find_user(7118)
        assert user is not None
        projects = await api.list_projects(owner_id=user.id)
    assert [p.name for p in projects.items] == ["garden"]
