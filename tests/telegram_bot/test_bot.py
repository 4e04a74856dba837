"""The bot through the fake Bot API: access, quick commands, the PO conversation, progress."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr
from structlog.testing import capture_logs

from services.telegram_bot.main import run_actor, run_telegram_bot
from services.telegram_bot.settings import TelegramBotSettings
from shared import registry
from shared.actor import ActorContext
from shared.api_client.schemas import UserCreate
from shared.chat import ChatUser, PoSessions, ReplyRelay
from shared.chat.po_profile import PO_API_TOKEN_ENV
from shared.messaging import Bus
from shared.redis_server import free_port
from shared.settings import ApiSettings, Settings
from tests.chat.system import ChatSystem
from tests.support.waiting import eventually
from tests.telegram_bot.bot import (
    ADMIN_ID,
    STRANGER_ID,
    USER_ID,
    bot_settings,
    find,
    say,
    start_bot,
)
from tests.telegram_bot.fake_bot_api import FakeBotApi


async def _add_user(bot_system: ChatSystem, telegram_id: int) -> None:
    async with bot_system.api() as api:
        await api.create_user(UserCreate(telegram_id=telegram_id))


def _calls_to(bot_api: FakeBotApi, chat_id: int) -> list[str]:
    return [m for m, params in bot_api.calls if str(params.get("chat_id")) == str(chat_id)]


async def test_unknown_user_gets_one_refusal_and_nothing_else(
    bot_system: ChatSystem, bot_api: FakeBotApi, background: list[asyncio.Task[Any]]
) -> None:
    """A stranger is told no once; no typing, no worker, no second message."""
    start_bot(bot_system, bot_api, background)
    await say(bot_api, STRANGER_ID, "/start", r"not registered")
    await bot_api.send_text(STRANGER_ID, "build me a shop")
    await bot_api.send_text(STRANGER_ID, "/projects")
    await say(bot_api, ADMIN_ID, "/help", r"/adduser")  # the bot has handled the earlier ones
    assert _calls_to(bot_api, STRANGER_ID) == ["sendMessage"]
    assert str(STRANGER_ID) in bot_api.texts(STRANGER_ID)[0]
    assert bot_system.manager.commands == []


async def test_quick_commands_answer_from_the_api(
    bot_system: ChatSystem, bot_api: FakeBotApi, background: list[asyncio.Task[Any]]
) -> None:
    """Admins add users from the chat; /projects, /new, /tasks, /status go to the API."""
    start_bot(bot_system, bot_api, background)
    await say(bot_api, USER_ID, "/start", r"not registered")
    added = await say(bot_api, ADMIN_ID, f"/adduser {USER_ID}", r"Added")
    assert f"Added {USER_ID} as a user" in added
    await say(bot_api, ADMIN_ID, f"/adduser {USER_ID}", r"already registered")
    assert "Hello" in await say(bot_api, USER_ID, "/start", r"Hello")
    await say(bot_api, USER_ID, "/projects", r"No projects yet")
    await say(bot_api, USER_ID, "/new alpha", r"Created project alpha")
    await say(bot_api, USER_ID, "/new " + "y" * 150, r"That name cannot be used: body.name")
    listed = await say(bot_api, USER_ID, "/projects", r"Your projects")
    assert "alpha — draft" in listed
    await say(bot_api, USER_ID, "/tasks", r"No tasks yet")
    await say(bot_api, USER_ID, "/status abc", r"No task of yours matches 'abc'")
    await say(bot_api, USER_ID, "/adduser 5", r"Only admins can add users")
    await say(bot_api, USER_ID, "/frobnicate", r"I do not know that command")
    async with bot_system.api() as api:
        user = await api.find_user(USER_ID)
        assert user is not None
        page = await api.list_projects(owner_id=user.id)
    assert [p.name for p in page.items] == ["alpha"]
    assert bot_system.manager.commands == []  # quick commands never wake an agent


async def test_conversation_develops_and_deploys_with_progress(
    bot_system: ChatSystem, bot_api: FakeBotApi, background: list[asyncio.Task[Any]]
) -> None:
    """Create a project, develop (progress edits, the commit), deploy (the URL answers)."""
    await _add_user(bot_system, USER_ID)
    start_bot(bot_system, bot_api, background)
    created = await say(bot_api, USER_ID, "create project shop", r"Created project shop")
    assert "built-in" in created
    await say(bot_api, USER_ID, "develop a /hello endpoint", r"Development of shop started")
    await bot_api.wait_for(lambda: find(bot_api, USER_ID, r"commit: [0-9a-f]{40}") is not None)
    progress = [m for m in bot_api.messages[USER_ID] if m.text.startswith("🔧 engineering")]
    assert len(progress) == 1  # one message per task, edited in place
    assert len(progress[0].texts) >= 3
    assert any(re.search(r"\[[█░]{10}\] [1-9]\d?%\nstep: \w+", t) for t in progress[0].texts)
    assert "sendChatAction" in bot_api.methods()
    await say(bot_api, USER_ID, "deploy", r"Deploy of shop started")
    await bot_api.wait_for(lambda: find(bot_api, USER_ID, r"URL: (\S+)") is not None)
    url = find(bot_api, USER_ID, r"URL: (\S+)")
    assert url is not None
    async with httpx.AsyncClient() as client:
        response = await client.get(url[1])
    assert (response.status_code, response.text[:10]) == (200, "hello from")
    task_id = re.search(r"task (\S{8})", progress[0].text)
    assert task_id is not None
    status = await say(bot_api, USER_ID, f"/status {task_id[1]}", r"commit_sha")
    assert "engineering: completed" in status
    assert len(bot_system.manager.commands) == 1  # one PO worker for the whole conversation


async def test_a_dead_po_worker_is_replaced(
    bot_system: ChatSystem, bot_api: FakeBotApi, background: list[asyncio.Task[Any]]
) -> None:
    """When the user's PO worker died, the next message creates a new one and is answered."""
    await _add_user(bot_system, USER_ID)
    start_bot(bot_system, bot_api, background)
    await say(bot_api, USER_ID, "help", r"without an LLM")
    await bot_system.manager.kill("po-1")
    await say(bot_api, USER_ID, "status", r"no project yet")
    assert sorted(bot_system.manager.workers) == ["po-1", "po-2"]
    assert bot_system.manager.workers["po-2"].prompts == ["status"]
    await eventually(lambda: bot_system.manager.deleted == ["po-1"])  # replaced: deleted, key gone


async def test_a_worker_dying_while_answering_is_replaced_and_the_question_resent(
    bot_system: ChatSystem, bot_api: FakeBotApi, background: list[asyncio.Task[Any]]
) -> None:
    """The PO worker dies with a question pending: a new worker gets it and answers once."""
    await _add_user(bot_system, USER_ID)
    start_bot(bot_system, bot_api, background)
    await say(bot_api, USER_ID, "help", r"without an LLM")
    bot_system.manager.answering.clear()
    await bot_api.send_text(USER_ID, "status")
    await eventually(lambda: bot_system.manager.workers["po-1"].prompts[-1:] == ["status"])
    await bot_system.manager.kill("po-1")
    bot_system.manager.answering.set()
    await bot_api.wait_for(lambda: find(bot_api, USER_ID, r"no project yet") is not None)
    answers = [t for t in bot_api.texts(USER_ID) if "no project yet" in t]
    assert len(answers) == 1
    assert bot_system.manager.workers["po-2"].prompts == ["status"]


async def test_worker_manager_refusal_reaches_the_user(
    bot_system: ChatSystem, bot_api: FakeBotApi, background: list[asyncio.Task[Any]]
) -> None:
    """A PO worker that cannot be started is reported in the chat, with the reason."""
    await _add_user(bot_system, USER_ID)
    bot_system.manager.fail_create = True
    start_bot(bot_system, bot_api, background)
    answer = await say(bot_api, USER_ID, "help", r"⚠️")
    assert "could not be started: no capacity" in answer


async def test_without_a_token_the_bot_returns_with_a_clear_log_line(
    bot_system: ChatSystem,
) -> None:
    """No TELEGRAM_BOT_TOKEN: `run_telegram_bot` logs why and returns (no crash)."""
    with capture_logs() as logs:
        await asyncio.wait_for(
            run_telegram_bot(
                bot_system.settings,
                bot_system.redis_url,
                bot_settings=TelegramBotSettings(token=None),
            ),
            5,
        )
    assert [entry["event"] for entry in logs] == ["telegram_bot_disabled"]
    assert "orchestrator chat" in logs[0]["reason"]


async def test_without_a_token_the_actor_relays_the_local_chats_replies(
    bot_system: ChatSystem,
    redis_client: aioredis.Redis,
    background: list[asyncio.Task[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`orchestrator up` without a bot token: the telegram-bot actor still relays worker
    replies, so a front door whose own relay is not consuming gets its PO worker."""
    await _add_user(bot_system, USER_ID)
    async with bot_system.api() as api:
        user = await api.find_user(USER_ID)
    assert user is not None
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_TELEGRAM__TOKEN", raising=False)
    background.append(
        asyncio.create_task(run_actor(ActorContext(bot_system.settings, bot_system.redis_url)))
    )
    bus = Bus(redis_client, actor=registry.Actor.TELEGRAM_BOT, consumer_name="local-chat")
    not_consuming = ReplyRelay(bus, redis_client)
    sessions = PoSessions(
        bus=bus, redis=redis_client, replies=not_consuming, door="cli", api_url="http://api"
    )
    worker_id = await sessions.ensure(ChatUser(user.id, USER_ID, USER_ID))
    assert worker_id == "po-1"
    assert PO_API_TOKEN_ENV in bot_system.manager.workers["po-1"].env


async def test_when_the_api_is_down_nobody_is_let_in(
    bot_api: FakeBotApi, redis_url: str, redis_client: object, tmp_path: Path
) -> None:
    """Fail-closed: with the API unreachable, a message gets "unavailable" and nothing else."""
    api = ApiSettings(port=free_port(), key=SecretStr("orc_nothing"))
    settings = Settings(data_dir=tmp_path, api=api, redis_url=redis_url)
    bot = asyncio.create_task(
        run_telegram_bot(settings, redis_url, bot_settings=bot_settings(bot_api))
    )
    try:
        answer = await say(bot_api, ADMIN_ID, "create project shop", r"unavailable")
    finally:
        bot.cancel()
        await asyncio.gather(bot, return_exceptions=True)
    assert answer.startswith("The service is unavailable")
    assert _calls_to(bot_api, ADMIN_ID) == ["sendMessage"]
