"""Helpers of the bot tests: the fake Bot API, bot settings, waiting for texts."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from pydantic import SecretStr

from services.telegram_bot.main import run_telegram_bot
from services.telegram_bot.settings import TelegramBotSettings
from tests.chat.system import ChatSystem
from tests.telegram_bot.fake_bot_api import FakeBotApi

ADMIN_ID = 1001
USER_ID = 2002
STRANGER_ID = 999
TOKEN = "123456:TEST-TOKEN"


def bot_settings(bot_api: FakeBotApi, **changes: Any) -> TelegramBotSettings:
    """Settings of a bot that talks to the fake Bot API, with fast timings."""
    values: dict[str, Any] = {
        "token": SecretStr(TOKEN),
        "bot_api_url": bot_api.base_url,
        "admins": [ADMIN_ID],
        "notify_poll_s": 0.2,
        "edit_interval_s": 0.05,
        "polling_timeout_s": 1,
        "create_timeout_s": 10.0,
        "answer_timeout_s": 30,
        **changes,
    }
    return TelegramBotSettings(**values)


def start_bot(
    system: ChatSystem, bot_api: FakeBotApi, background: list[asyncio.Task[Any]], **changes: Any
) -> asyncio.Task[None]:
    """Run the bot in this process (cancelled at the end of the test)."""
    task = asyncio.create_task(
        run_telegram_bot(
            system.settings, system.redis_url, bot_settings=bot_settings(bot_api, **changes)
        )
    )
    background.append(task)
    return task


async def say(bot_api: FakeBotApi, user_id: int, text: str, expect: str) -> str:
    """Send `text` as the user; wait for a message to them matching `expect`; return it."""
    before = len(bot_api.messages.get(user_id, []))
    await bot_api.send_text(user_id, text)

    def found() -> str | None:
        for message in bot_api.messages.get(user_id, [])[before:]:
            if re.search(expect, message.text):
                return message.text
        return None

    await bot_api.wait_for(lambda: found() is not None)
    answer = found()
    assert answer is not None
    return answer


def find(bot_api: FakeBotApi, chat_id: int, pattern: str) -> re.Match[str] | None:
    """The first current message text of a chat matching `pattern`."""
    for text in bot_api.texts(chat_id):
        if match := re.search(pattern, text):
            return match
    return None
