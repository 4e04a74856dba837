"""The bot SIGKILLed while a task runs and a question waits: started again, it delivers the
final result and the answer, each once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from shared.api_client.schemas import UserCreate
from tests.chat.system import ChatSystem
from tests.support.waiting import eventually
from tests.telegram_bot.bot import ADMIN_ID, TOKEN, USER_ID, say
from tests.telegram_bot.fake_bot_api import FakeBotApi

ROOT = Path(__file__).resolve().parents[2]


async def _start_bot_process(
    bot_system: ChatSystem, bot_api: FakeBotApi, log: Path
) -> asyncio.subprocess.Process:
    """`python -m services.telegram_bot`, configured only through its environment."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "REDIS_URL": bot_system.redis_url,
        "ORCHESTRATOR_DATA_DIR": str(log.parent),
        "ORCHESTRATOR_API__URL": bot_system.settings.api.base_url,
        "ORCHESTRATOR_API__KEY": bot_system.admin_key,
        "ORCHESTRATOR_TELEGRAM__BOT_API_URL": bot_api.base_url,
        "ORCHESTRATOR_TELEGRAM__ADMINS": json.dumps([ADMIN_ID]),
        "ORCHESTRATOR_TELEGRAM__NOTIFY_POLL_S": "0.2",
        "ORCHESTRATOR_TELEGRAM__EDIT_INTERVAL_S": "0.05",
        "ORCHESTRATOR_TELEGRAM__POLLING_TIMEOUT_S": "1",
        "ORCHESTRATOR_TELEGRAM__ANSWER_TIMEOUT_S": "60",
    }
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.telegram_bot", cwd=ROOT, env=env, stdout=out, stderr=out
        )


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGKILL)
        await process.wait()


@pytest.mark.slow
async def test_a_killed_bot_delivers_the_final_result_and_the_pending_answer_once(
    bot_system: ChatSystem, bot_api: FakeBotApi, tmp_path: Path
) -> None:
    """SIGKILL mid-task and mid-question; the restarted bot finishes both, exactly once."""
    async with bot_system.api() as api:
        await api.create_user(UserCreate(telegram_id=USER_ID))
    log = tmp_path / "bot.log"
    bot_system.langgraph.release.clear()
    bot = await _start_bot_process(bot_system, bot_api, log)
    try:
        await say(bot_api, USER_ID, "create project shop", r"Created project shop")
        await say(bot_api, USER_ID, "develop a /hello endpoint", r"Development of shop started")
        await asyncio.wait_for(bot_system.langgraph.reached_gate.wait(), 30)
        await bot_api.wait_for(
            lambda: any("step: developer" in t for t in bot_api.texts(USER_ID)), timeout_s=30
        )
        bot_system.manager.answering.clear()
        await bot_api.send_text(USER_ID, "status")
        await eventually(lambda: bot_system.manager.workers["po-1"].prompts[-1:] == ["status"])
        await _kill(bot)
        sent_before = len(bot_api.messages[USER_ID])
        bot_system.manager.answering.set()  # the PO answers while the bot is dead
        bot_system.langgraph.release.set()  # and the task completes while the bot is dead
        await asyncio.sleep(1.0)
        assert len(bot_api.messages[USER_ID]) == sent_before
        bot = await _start_bot_process(bot_system, bot_api, log)
        await bot_api.wait_for(
            lambda: (
                any("commit:" in t for t in bot_api.texts(USER_ID))
                and any("Project shop" in t for t in bot_api.texts(USER_ID))
            ),
            timeout_s=60,
        )
        await asyncio.sleep(1.5)  # time for any duplicate to show up
    finally:
        await _kill(bot)
    progress = [m for m in bot_api.messages[USER_ID] if "engineering task" in m.text]
    assert len(progress) == 1
    finals = [t for t in progress[0].texts if "commit:" in t]
    assert len(finals) == 1
    assert len([t for t in bot_api.texts(USER_ID) if "Project shop" in t]) == 1
    assert bot_system.manager.workers["po-1"].prompts.count("status") == 1
    assert "Traceback" not in log.read_text()
