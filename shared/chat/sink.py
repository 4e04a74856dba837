"""What a front door provides to the core (`ChatSink`) and who it talks to (`ChatUser`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["TELEGRAM_TEXT_LIMIT", "ChatSink", "ChatUser", "split_text"]

TELEGRAM_TEXT_LIMIT = 4096
"""Longest text of one Telegram message (characters)."""


@dataclass(frozen=True)
class ChatUser:
    """A user known to the API, and the chat that reaches them."""

    user_id: int
    """The API's user id."""
    telegram_id: int
    chat_id: int
    """Where answers go (a Telegram private chat id equals the user's Telegram id)."""
    is_admin: bool = False


class ChatSink(Protocol):
    """How the core talks back: send a message, edit one in place, show that it is typing."""

    async def send(self, chat_id: int, text: str) -> int:
        """Send `text`; returns the message id (for later edits)."""
        ...

    async def edit(self, chat_id: int, message_id: int, text: str) -> None:
        """Replace the text of a message sent earlier."""
        ...

    async def typing(self, chat_id: int) -> None:
        """Show that an answer is being prepared (a no-op where that means nothing)."""
        ...


def split_text(text: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """`text` in chunks of at most `limit` characters, cut at line ends where possible."""
    if not text:
        return ["(empty answer)"]
    chunks: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit)
        if cut <= 0:
            cut = rest.rfind(" ", 0, limit)
        if cut <= 0:
            cut = limit
        chunks.append(rest[:cut])
        rest = rest[cut:].lstrip("\n")
    if rest:
        chunks.append(rest)
    return chunks
