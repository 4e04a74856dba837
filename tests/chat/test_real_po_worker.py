"""The PO worker for real: the worker-manager starts a worker-wrapper process whose built-in
PO agent acts through the API with the user-scoped token of its environment."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from services.worker_manager.local_runtime import LocalProcessRuntime
from services.worker_manager.main import run_worker_manager
from services.worker_manager.settings import WorkerManagerSettings
from shared.chat import ChatOptions
from shared.settings import Settings
from tests.chat.system import ChatSystem, chat_system
from tests.support.chat import start_chat
from tests.support.waiting import eventually

MANAGER_ID = "chat-test-manager"


def manager_system_settings(po_system: ChatSystem) -> Settings:
    """The system's settings as the worker-manager gets them: the API and its service key."""
    api = po_system.settings.api.model_copy(update={"key": SecretStr(po_system.service_key)})
    return po_system.settings.model_copy(update={"api": api})


@pytest.fixture
async def real_system(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[ChatSystem]:
    """The API, the real worker-manager (built-in agent, local processes), a fake langgraph."""
    data_dir = tmp_path / "workers"
    manager_settings = WorkerManagerSettings(
        data_dir=data_dir,
        adapter="builtin",
        manager_id=MANAGER_ID,
        monitor_interval_s=0.2,
        heartbeat_interval_s=0.5,
        idle_timeout_s=0.0,
        start_timeout_s=60.0,
    )
    async with chat_system(tmp_path, redis_url, redis_client, fake_manager=False) as po_system:
        manager = asyncio.create_task(
            run_worker_manager(
                manager_system_settings(po_system),
                redis_client,
                redis_url=redis_url,
                manager_settings=manager_settings,
            )
        )
        try:
            yield po_system
        finally:
            manager.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await manager
            runtime = LocalProcessRuntime(data_dir)
            for ref in (await runtime.list_owned(MANAGER_ID)).values():
                await runtime.stop(ref, grace_s=0)


@pytest.mark.slow
async def test_a_real_po_worker_creates_the_project_and_the_task_through_the_api(
    real_system: ChatSystem,
) -> None:
    """Chat → worker-manager → wrapper process → built-in PO agent → API → progress → chat."""
    local = start_chat(
        real_system, telegram_id=7007, options=ChatOptions(answer_timeout_s=60, liveness_poll_s=0.3)
    )
    out, script, chat = local.out, local.script, local.task
    try:
        await script.queue.put("create project garden")
        await eventually(lambda: any("Created project garden" in t for t in out), timeout_s=60)
        await script.queue.put("develop a page listing plants")
        await eventually(lambda: any(re.search(r"commit: [0-9a-f]{40}", t) for t in out))
        await script.queue.put(None)
        assert await asyncio.wait_for(chat, 30) == 0
    finally:
        chat.cancel()
        await asyncio.gather(chat, return_exceptions=True)
    async with real_system.api() as api:
        user = await api.find_user(7007)
        assert user is not None
        projects = await api.list_projects(owner_id=user.id)
        tasks = await api.list_tasks(owner_id=user.id)
    assert [p.name for p in projects.items] == ["garden"]
    assert [(t.type.value, t.spec) for t in tasks.items] == [
        ("engineering", "a page listing plants")
    ]
    assert not any(real_system.admin_key in text for text in out)
