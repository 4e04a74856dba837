"""`orchestrator chat` driven by a test: `run_chat` as a task, lines typed one at a time,
what it writes collected."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from services.cli.chat import run_chat
from shared.chat import ChatOptions
from tests.chat.system import ChatSystem
from tests.support.waiting import eventually

__all__ = ["FAST", "LocalChat", "Script", "found", "start_chat"]

FAST = ChatOptions(answer_timeout_s=30, liveness_poll_s=0.2)
"""Short waits for a chat against fake actors."""


class Script:
    """Lines typed by the test, one at a time; None ends the input."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def lines(self) -> AsyncIterator[str]:
        """The lines as `run_chat` reads them."""
        while (line := await self.queue.get()) is not None:
            yield line


def found(out: list[str], pattern: str) -> re.Match[str] | None:
    """The first of the written texts `pattern` matches in, or None."""
    for text in out:
        if match := re.search(pattern, text):
            return match
    return None


@dataclass
class LocalChat:
    """A running chat: `script` is what the user types, `out` what the chat wrote, `task`
    the conversation (its result is the exit code)."""

    task: asyncio.Task[int]
    script: Script
    out: list[str] = field(default_factory=list)

    async def said(self, line: str, pattern: str, *, timeout_s: float = 20.0) -> str:
        """Type `line`; the first text written after it that matches `pattern`."""
        before = len(self.out)
        await self.script.queue.put(line)
        await eventually(lambda: found(self.out[before:], pattern) is not None, timeout_s=timeout_s)
        match = found(self.out[before:], pattern)
        assert match is not None
        return match.string


def start_chat(
    system: ChatSystem,
    *,
    telegram_id: int,
    options: ChatOptions = FAST,
    read_hidden: Callable[[str], Awaitable[str | None]] | None = None,
) -> LocalChat:
    """`run_chat` against `system` as user `telegram_id`, started as a task."""
    script = Script()
    out: list[str] = []
    task = asyncio.create_task(
        run_chat(
            system.settings,
            system.redis_url,
            lines=script.lines(),
            write=out.append,
            telegram_id=telegram_id,
            options=options,
            notify_poll_s=0.2,
            read_hidden=read_hidden,
        )
    )
    return LocalChat(task, script, out)
