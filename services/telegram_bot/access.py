"""Fail-closed access: users known to the API may talk; admins come from configuration.

Everyone else gets one clear refusal (then silence until `refusal_ttl_s` passes) and nothing
else: no typing indicator, no worker, no API call on their behalf. When the API cannot be
asked, nobody is let in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
import structlog
from aiogram import BaseMiddleware
from aiogram.types import Message, TelegramObject

from shared.api_client import ApiClient, ApiClientError
from shared.api_client.schemas import UserCreate
from shared.chat.keys import refusal_key
from shared.chat.sink import ChatUser

__all__ = ["DOOR", "AccessControl", "AccessMiddleware", "known_chat_key"]

log = structlog.get_logger("services.telegram_bot")

DOOR = "telegram"
"""The front door's name in the conversation core's Redis keys."""

REFUSAL = (
    "Sorry, this is a private bot and your Telegram account ({telegram_id}) is not registered. "
    "Ask an administrator to add you."
)
UNAVAILABLE = "The service is unavailable right now; please try again later."


def known_chat_key(user_id: int) -> str:
    """The chat id where a user (an API user id) talks to the bot."""
    return f"chat:{DOOR}:chat-of:{user_id}"


class AccessControl:
    """Who may talk to the bot, answered by the API."""

    def __init__(
        self, api: ApiClient, redis: aioredis.Redis, *, admins: list[int], refusal_ttl_s: int
    ) -> None:
        self.api = api
        self.redis = redis
        self.admins = frozenset(admins)
        self.refusal_ttl_s = refusal_ttl_s

    async def resolve(self, telegram_id: int, chat_id: int) -> ChatUser | None:
        """The user behind a Telegram id, or None when unknown (configured admins are added)."""
        user = await self.api.find_user(telegram_id)
        if user is None and telegram_id in self.admins:
            user = await self.api.create_user(UserCreate(telegram_id=telegram_id, is_admin=True))
            log.info("admin_registered", user_id=user.id)
        if user is None:
            return None
        await self.redis.set(known_chat_key(user.id), str(chat_id))
        return ChatUser(
            user_id=user.id,
            telegram_id=telegram_id,
            chat_id=chat_id,
            is_admin=user.is_admin or telegram_id in self.admins,
        )

    async def should_refuse(self, telegram_id: int) -> bool:
        """True the first time (per TTL) an unknown user writes: tell them, once."""
        first = await self.redis.set(
            refusal_key(DOOR, telegram_id), "1", nx=True, ex=self.refusal_ttl_s
        )
        return bool(first)

    async def chat_of(self, user_id: int) -> int | None:
        """The chat of a user who has talked to the bot, else None."""
        raw = await self.redis.get(known_chat_key(user_id))
        return None if raw is None else int(raw)


Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class AccessMiddleware(BaseMiddleware):
    """An outer middleware on messages: puts `user` (a `ChatUser`) in the handler data."""

    def __init__(self, access: AccessControl) -> None:
        self.access = access

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        """Let known users through; refuse the others, once."""
        if not isinstance(event, Message) or event.from_user is None:
            return None
        telegram_id = event.from_user.id
        try:
            user = await self.access.resolve(telegram_id, event.chat.id)
        except ApiClientError as error:
            log.warning("access_check_failed", error=type(error).__name__)
            await event.answer(UNAVAILABLE)
            return None
        if user is None:
            if await self.access.should_refuse(telegram_id):
                await event.answer(REFUSAL.format(telegram_id=telegram_id))
            log.info("unknown_user_refused", telegram_id=telegram_id)
            return None
        data["user"] = user
        return await handler(event, data)
