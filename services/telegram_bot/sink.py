"""`TelegramSink`: the `ChatSink` of the bot (send, edit in place, typing) over aiogram."""

from __future__ import annotations

import structlog
from aiogram import Bot
from aiogram.enums import ChatAction
from aiogram.exceptions import TelegramBadRequest

from shared.chat.sink import TELEGRAM_TEXT_LIMIT

__all__ = ["TelegramSink"]

log = structlog.get_logger("services.telegram_bot")


class TelegramSink:
    """Talks to Telegram chats through one `Bot`."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def send(self, chat_id: int, text: str) -> int:
        """Send a message; returns its id."""
        message = await self.bot.send_message(chat_id, text[:TELEGRAM_TEXT_LIMIT])
        return message.message_id

    async def edit(self, chat_id: int, message_id: int, text: str) -> None:
        """Edit a message in place; an unchanged text is fine, a lost message is resent."""
        try:
            await self.bot.edit_message_text(
                text[:TELEGRAM_TEXT_LIMIT], chat_id=chat_id, message_id=message_id
            )
        except TelegramBadRequest as error:
            if "not modified" in str(error).lower():
                return
            log.warning("edit_failed_resending", chat_id=chat_id, error=str(error))
            await self.send(chat_id, text)

    async def typing(self, chat_id: int) -> None:
        """Show "typing…" in the chat for a few seconds."""
        await self.bot.send_chat_action(chat_id, ChatAction.TYPING)
