"""The bot's side of secret prompts: the value message is stored, answered and deleted.

While a user has an open prompt (`shared.chat.secret_prompt`), their next text message that
is not a command never reaches a handler: it is stored through the API and removed from the
chat with the Bot API's `deleteMessage`. `/cancel` closes the prompt; other commands pass.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import BaseMiddleware
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Message, TelegramObject

from shared.chat.secret_prompt import SecretPrompts
from shared.chat.sink import ChatUser

__all__ = ["SecretPromptMiddleware"]

log = structlog.get_logger("services.telegram_bot")


class SecretPromptMiddleware(BaseMiddleware):
    """Takes the message answering an open secret prompt (after the access check)."""

    def __init__(self, prompts: SecretPrompts) -> None:
        self.prompts = prompts

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user = data.get("user")
        if not isinstance(event, Message) or event.text is None or not isinstance(user, ChatUser):
            return await handler(event, data)
        taken = await self.prompts.intercept(user, event.text)
        if taken is None:
            return await handler(event, data)
        answer, was_value = taken
        if was_value:
            try:
                await event.delete()
            except TelegramAPIError as error:
                # the error names the method and the chat, never the message's text
                log.warning("secret_message_not_deleted", error=type(error).__name__)
                answer += "\n⚠️ I could not delete your message: please delete it yourself."
        await event.answer(answer)
        return None
