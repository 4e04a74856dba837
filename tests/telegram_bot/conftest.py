"""Fixtures of the bot tests: the running system (real API, fake actors), the fake Bot API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.chat.system import ChatSystem, chat_system
from tests.support.waiting import background_tasks
from tests.telegram_bot.fake_bot_api import FakeBotApi


@pytest.fixture
async def bot_system(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis
) -> AsyncIterator[ChatSystem]:
    """The API on SQLite with its outbox relay, a fake worker-manager and a fake langgraph."""
    async with chat_system(tmp_path, redis_url, redis_client) as running:
        yield running


@pytest.fixture
async def background(
    bot_system: ChatSystem, bot_api: FakeBotApi
) -> AsyncIterator[list[asyncio.Task[Any]]]:
    """Tasks a test starts; cancelled before the system stops, even when the test failed."""
    async with background_tasks() as tasks:
        yield tasks


@pytest.fixture
async def bot_api() -> AsyncIterator[FakeBotApi]:
    """The fake Telegram Bot API on a local port."""
    api = FakeBotApi()
    await api.start()
    try:
        yield api
    finally:
        await api.stop()
