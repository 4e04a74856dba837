"""The whole system behind the bot: `orchestrator up` (API, worker-manager, scaffolder,
infra-service, langgraph, scheduler, telegram-bot) as a real process, the fake Bot API in
front, and the conversation of the README: create a project, develop, deploy."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.worker_manager.local_runtime import LocalProcessRuntime
from shared.api_client import ApiClient
from tests.support.system import UpSystem, reap
from tests.telegram_bot.bot import ADMIN_ID, TOKEN, find, say
from tests.telegram_bot.fake_bot_api import FakeBotApi


@pytest.fixture
async def system_up(tmp_path: Path, bot_api: FakeBotApi) -> AsyncIterator[tuple[str, Path]]:
    """`orchestrator up` with a bot token pointed at the fake Bot API; (API URL, data dir)."""
    settings = {
        "ORCHESTRATOR_WORKERS__ADAPTER": "builtin",
        "ORCHESTRATOR_TELEGRAM__BOT_API_URL": bot_api.base_url,
        "ORCHESTRATOR_TELEGRAM__ADMINS": json.dumps([ADMIN_ID]),
        "ORCHESTRATOR_TELEGRAM__NOTIFY_POLL_S": "0.5",
        "ORCHESTRATOR_TELEGRAM__EDIT_INTERVAL_S": "0.2",
        "ORCHESTRATOR_TELEGRAM__POLLING_TIMEOUT_S": "1",
        "ORCHESTRATOR_LANGGRAPH__TIMEOUTS__HEALTH_CHECK_S": "10",
    }
    system = UpSystem(tmp_path, settings=settings, secrets={"TELEGRAM_BOT_TOKEN": TOKEN})
    try:
        # started in a thread: the fake Bot API answers the bot from this loop meanwhile
        await asyncio.to_thread(system.start)
        yield f"http://127.0.0.1:{system.port}", system.data_dir
    finally:
        await asyncio.to_thread(system.stop)
        runtime = LocalProcessRuntime(system.data_dir / "workers")
        left = await runtime.list_owned("worker-manager")
        for ref in left.values():
            await runtime.stop(ref, grace_s=0)
        await asyncio.to_thread(reap, system.data_dir)
        # up's Redis was private: the worker-manager deletes its workers (the PO worker of
        # the conversation) on the way out instead of leaving them orphaned
        assert not left, f"workers outlived orchestrator up: {sorted(left)}"


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_three_messages_through_the_whole_system(
    system_up: tuple[str, Path], bot_api: FakeBotApi
) -> None:
    """A project is created, developed (commit in the remote) and deployed, all from the chat."""
    api_url, data_dir = system_up
    await say(bot_api, ADMIN_ID, "/start", r"Hello")  # waits for the whole system to be up
    await say(bot_api, ADMIN_ID, "create project shop", r"Created project shop")
    await say(bot_api, ADMIN_ID, "develop a /hello endpoint", r"Development of shop started")
    await bot_api.wait_for(
        lambda: find(bot_api, ADMIN_ID, r"✅ completed.*\ncommit: ([0-9a-f]{40})") is not None,
        timeout_s=120,
    )
    commit = find(bot_api, ADMIN_ID, r"commit: ([0-9a-f]{40})")
    assert commit is not None
    key = (data_dir / "secrets" / "cli.key").read_text().strip()
    async with ApiClient(api_url, key=key) as api:
        project = (await api.list_projects()).items[0]
        assert project.repository_url is not None
        for _ in range(120):  # the scheduler provisions this machine as the deploy server
            if (await api.get_server("local")).status.value == "ready":
                break
            await asyncio.sleep(1)
    heads = await asyncio.to_thread(
        subprocess.run,
        ["git", "ls-remote", project.repository_url],
        capture_output=True,
        text=True,
        check=True,
    )
    assert commit[1] in heads.stdout
    await say(bot_api, ADMIN_ID, "deploy", r"Deploy of shop started")
    await bot_api.wait_for(
        lambda: find(bot_api, ADMIN_ID, r"🚀 deploy task .*\n(✅|❌)") is not None, timeout_s=200
    )
    deploys = [m for m in bot_api.messages[ADMIN_ID] if m.text.startswith("🚀 deploy task")]
    assert len(deploys) == 1  # one message, edited in place
    url = find(bot_api, ADMIN_ID, r"URL: (\S+)")
    assert url is not None, re.sub(r"\s+", " ", deploys[0].text)
    async with httpx.AsyncClient() as client:
        response = await client.get(url[1])
    assert response.status_code == 200
