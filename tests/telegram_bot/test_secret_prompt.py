"""A secret asked for in the Telegram chat: the next message is the value, stored through the
API and deleted from the chat; it reaches no PO prompt, Redis key, log or answer. The open
prompt survives a restart of the bot, expires clearly, and bad input opens none."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from shared.api_client.schemas import UserCreate
from shared.chat.keys import pending_key
from tests.chat.leaks import redis_places, stored_value
from tests.chat.system import ChatSystem
from tests.support.waiting import eventually
from tests.telegram_bot.bot import USER_ID, find, say, start_bot
from tests.telegram_bot.fake_bot_api import FakeBotApi
from tests.telegram_bot.test_restart import _kill, _start_bot_process

PLANTED = "7700123:planted-bot-token-c41f"


async def _no_pending(redis: aioredis.Redis, key: str) -> bool:
    return not await redis.hlen(key)


def _po_prompts(bot_system: ChatSystem) -> list[str]:
    return [prompt for worker in bot_system.manager.workers.values() for prompt in worker.prompts]


@pytest.mark.slow
async def test_the_po_asks_for_the_bot_token_and_the_next_message_is_stored_then_deleted(
    bot_system: ChatSystem, bot_api: FakeBotApi, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    """The built-in PO creates a bot project and asks for BOT_TOKEN; the bot restarts; the
    user's next message is stored, deleted from the chat, and found nowhere else."""
    async with bot_system.api() as api:
        await api.create_user(UserCreate(telegram_id=USER_ID))
    log = tmp_path / "bot.log"
    bot = await _start_bot_process(bot_system, bot_api, log)
    try:
        await bot_api.send_text(USER_ID, "create project shop with a telegram bot")
        await bot_api.wait_for(  # a loaded machine may take a while to start a process
            lambda: find(bot_api, USER_ID, r"Created project shop") is not None, timeout_s=120
        )
        created = find(bot_api, USER_ID, r"Created project shop")
        assert created is not None
        asked = created.string
        assert "Send the value of BOT_TOKEN for shop as your next message" in asked
        assert "[[ask-secret" not in asked  # the front door replaced the PO's line
        # the answer is delivered once marked so (a kill before that would ask the PO again)
        pending = pending_key("telegram")
        await eventually(lambda: _no_pending(redis_client, pending), timeout_s=60)
        await _kill(bot)  # the open prompt is in Redis: a restarted bot still takes the value
        bot = await _start_bot_process(bot_system, bot_api, log)
        await bot_api.send_text(USER_ID, PLANTED)
        await bot_api.wait_for(
            lambda: find(bot_api, USER_ID, r"BOT_TOKEN stored for shop") is not None,
            timeout_s=120,
        )
        assert len(bot_api.deleted) == 1
        history = bot_api.history(USER_ID)
        assert all(PLANTED not in text for text in history)
        assert "create project shop with a telegram bot" in history  # only the value went
        listed = await say(bot_api, USER_ID, "/secrets", r"Secrets of shop")
        assert "BOT_TOKEN" in listed
        await say(bot_api, USER_ID, "status", r"Project shop")  # the prompt is over
    finally:
        await _kill(bot)
    async with bot_system.api() as api:
        project = (await api.list_projects()).items[0]
    assert await stored_value(
        bot_system.settings, bot_system.service_key, project.id, "BOT_TOKEN"
    ) == (PLANTED)
    assert "deleteMessage" in bot_api.methods()
    assert all(PLANTED not in str(params) for _, params in bot_api.calls)
    assert all(PLANTED not in prompt for prompt in _po_prompts(bot_system))
    assert await redis_places(redis_client, PLANTED) == []
    text = log.read_text()
    assert PLANTED not in text
    assert "Traceback" not in text


async def test_bad_input_cancel_and_expiry_leave_the_next_message_to_the_po(
    bot_system: ChatSystem,
    bot_api: FakeBotApi,
    background: list[asyncio.Task[Any]],
    redis_client: aioredis.Redis,
) -> None:
    """An unknown project or an invalid name opens no prompt; /cancel closes one; a refused
    value keeps it open; an expired prompt stores nothing and relays nothing."""
    async with bot_system.api() as api:
        await api.create_user(UserCreate(telegram_id=USER_ID))
    start_bot(bot_system, bot_api, background)
    await say(bot_api, USER_ID, "create project shop", r"Created project shop")
    await say(bot_api, USER_ID, "/secret nope API_KEY", r"Not asking: you have no project 'nope'")
    await say(bot_api, USER_ID, "status", r"Project shop")  # not swallowed: the PO answered
    await say(bot_api, USER_ID, "/secret shop 9BAD-NAME", r"'9BAD-NAME' is not a secret name")
    await say(bot_api, USER_ID, "status", r"Project shop")
    await say(bot_api, USER_ID, "/secret API_KEY", r"Send the value of API_KEY for shop")
    await say(bot_api, USER_ID, "/cancel", r"Cancelled: API_KEY of shop was not set")
    await say(bot_api, USER_ID, "status", r"Project shop")
    await say(bot_api, USER_ID, "/secret shop API_KEY", r"Send the value of API_KEY")
    await say(bot_api, USER_ID, "/deploys", r"shop has not been deployed yet")  # still open
    await say(bot_api, USER_ID, f"{PLANTED}\nsecond line", r"Not stored: .*one line")
    assert all(PLANTED not in text for text in bot_api.history(USER_ID))  # deleted anyway
    await say(bot_api, USER_ID, PLANTED, r"API_KEY stored for shop")
    await say(bot_api, USER_ID, "/secrets shop", r"Secrets of shop \(names only\): API_KEY")
    assert all(PLANTED not in prompt for prompt in _po_prompts(bot_system))
    assert await redis_places(redis_client, PLANTED) == []
    assert len(bot_api.deleted) == 2


async def test_an_expired_prompt_stores_nothing_and_relays_nothing(
    bot_system: ChatSystem,
    bot_api: FakeBotApi,
    background: list[asyncio.Task[Any]],
    redis_client: aioredis.Redis,
) -> None:
    """With a prompt that expires at once, the late value is deleted, not stored, not relayed;
    the message after it goes to the PO again."""
    async with bot_system.api() as api:
        await api.create_user(UserCreate(telegram_id=USER_ID))
    start_bot(bot_system, bot_api, background, secret_prompt_ttl_s=0)
    await say(bot_api, USER_ID, "create project shop", r"Created project shop")
    await say(bot_api, USER_ID, "/secret shop API_KEY", r"Send the value of API_KEY")
    late = await say(bot_api, USER_ID, PLANTED, r"had expired")
    assert "not stored and not passed on" in late
    assert "/secret shop API_KEY" in late
    assert all(PLANTED not in text for text in bot_api.history(USER_ID))
    await say(bot_api, USER_ID, "/secrets", r"shop has no secrets")
    await say(bot_api, USER_ID, "status", r"Project shop")
    assert all(PLANTED not in prompt for prompt in _po_prompts(bot_system))
    assert await redis_places(redis_client, PLANTED) == []


async def test_a_deploy_of_a_bot_without_its_token_asks_for_it(
    bot_system: ChatSystem,
    bot_api: FakeBotApi,
    background: list[asyncio.Task[Any]],
    redis_client: aioredis.Redis,
) -> None:
    """The built-in PO notices a bot project lacks BOT_TOKEN when asked to deploy and asks
    for it; once stored, a deploy does not ask again. A PO line naming a project the user
    does not have opens no prompt and says so."""
    async with bot_system.api() as api:
        await api.create_user(UserCreate(telegram_id=USER_ID))
    start_bot(bot_system, bot_api, background)
    await say(bot_api, USER_ID, "create project bot with a telegram bot", r"Send the value")
    await say(bot_api, USER_ID, "/cancel", r"Cancelled: BOT_TOKEN of bot was not set")
    asked = await say(bot_api, USER_ID, "deploy", r"Deploy of bot started")
    assert "Send the value of BOT_TOKEN for bot" in asked
    await say(bot_api, USER_ID, PLANTED, r"BOT_TOKEN stored for bot")
    again = await say(bot_api, USER_ID, "deploy", r"Deploy of bot started")
    assert "BOT_TOKEN" not in again
    await say(bot_api, USER_ID, "/secrets nope", r"You have no project 'nope'")
    assert await redis_places(redis_client, PLANTED) == []
