"""The conversation core every front door shares (Telegram bot, `orchestrator chat`).

- `Conversation`: finds or creates the user's PO worker (`PoSessions`), relays a message on
  `worker:{id}:input`, waits for the answer on `worker:{id}:output` and delivers it through a
  `ChatSink`; pending questions survive a restart (`resume_pending`).
- `TaskNotifier`: one message per task of the user, edited in place as the task advances,
  ending with the result; its state lives in Redis, so a restart loses no final notification.
- `ReplyRelay`: requests on `worker:commands` whose replies come back through the front
  doors' observer group of `worker:responses` (langgraph consumes the same stream).
- `po_profile`: the Product-Owner worker's instructions and credential variables.

Transport-independent: a front door implements `ChatSink` (send, edit, typing).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.chat.conversation import ChatOptions, Conversation
    from shared.chat.errors import ChatError, PoWorkerUnavailableError
    from shared.chat.notifier import TaskNotifier
    from shared.chat.replies import ReplyRelay
    from shared.chat.sessions import PoSessions
    from shared.chat.sink import ChatSink, ChatUser

# Names are imported on first use: a worker only needs `po_profile`, and importing the whole
# core (Redis, the API client) would add a fifth to every worker's start-up time.
_HOMES = {
    "ChatOptions": "conversation",
    "Conversation": "conversation",
    "ChatError": "errors",
    "PoWorkerUnavailableError": "errors",
    "TaskNotifier": "notifier",
    "ReplyRelay": "replies",
    "PoSessions": "sessions",
    "ChatSink": "sink",
    "ChatUser": "sink",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ChatError",
    "ChatOptions",
    "ChatSink",
    "ChatUser",
    "Conversation",
    "PoSessions",
    "PoWorkerUnavailableError",
    "ReplyRelay",
    "TaskNotifier",
]
