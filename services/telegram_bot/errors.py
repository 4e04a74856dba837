"""Errors of the telegram-bot.

TelegramBotError
└── BotConfigError     the bot cannot start with this configuration (no API credential, ...)
"""

from __future__ import annotations

__all__ = ["BotConfigError", "TelegramBotError"]


class TelegramBotError(Exception):
    """Base of the telegram-bot's errors."""


class BotConfigError(TelegramBotError):
    """The configuration does not let the bot run; the message says what to set."""
