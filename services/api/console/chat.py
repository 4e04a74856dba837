"""The console's chat: the same PO conversation as Telegram and `orchestrator chat`.

The API process runs one conversation core (`shared.chat`) for the console door
(`console`): the same PO worker per user (`chat:po:{user_id}`), the same queues, and a
`TaskNotifier` per user that edits one message per task as it advances. The console's
`ChatSink` appends each sent or edited message to the user's Redis stream
`console:chat:{user_id}` (capped); the chat page replays it and follows it over server-sent
events, drawing the progress text's percentage as a progress bar.

The notifier reads tasks through the API with the signed-in session's own key (it acts as
that user, never more), kept in this process's memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import redis.asyncio as aioredis
import structlog

from shared import registry
from shared.api_client import ApiClient
from shared.chat import ChatUser, Conversation, PoSessions, ReplyRelay, TaskNotifier
from shared.messaging import Bus

__all__ = ["CHAT_MAXLEN", "ConsoleChat", "StreamSink", "chat_stream"]

log = structlog.get_logger("services.api.console")

DOOR = "console"
CHAT_MAXLEN = 500


def chat_stream(user_id: int) -> str:
    """The Redis stream of one user's console chat."""
    return f"console:chat:{user_id}"


class StreamSink:
    """A `ChatSink` that appends messages and their edits to the user's chat stream."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def send(self, chat_id: int, text: str) -> int:
        """Append a new message; its id comes from a counter shared by every console."""
        message_id = int(await self.redis.incr("console:chat:ids"))
        await self.post(chat_id, message_id, text, "po")
        return message_id

    async def edit(self, chat_id: int, message_id: int, text: str) -> None:
        """Append the message's new text (the page replaces it in place)."""
        await self.post(chat_id, message_id, text, "po")

    async def typing(self, chat_id: int) -> None:
        """The page shows a waiting line while a question is open: nothing to send."""

    async def post(self, chat_id: int, message_id: int, text: str, author: str) -> None:
        await self.redis.xadd(
            chat_stream(chat_id),
            {"id": str(message_id), "text": text, "from": author},
            maxlen=CHAT_MAXLEN,
            approximate=True,
        )


class ConsoleChat:
    """The console door's conversation core, started on the first message."""

    def __init__(self, redis: aioredis.Redis, api_url: str) -> None:
        self.redis = redis
        self.api_url = api_url
        self.sink = StreamSink(redis)
        self._lock = asyncio.Lock()
        self._relay: ReplyRelay | None = None
        self._conversation: Conversation | None = None
        self._bus: Bus | None = None
        self._notifiers: dict[int, tuple[TaskNotifier, ApiClient, asyncio.Task[None]]] = {}
        self._asks: set[asyncio.Task[None]] = set()

    async def _core(self) -> Conversation:
        async with self._lock:
            if self._conversation is None:
                self._bus = Bus(self.redis, actor=registry.Actor.TELEGRAM_BOT)
                self._relay = ReplyRelay(self._bus, self.redis)
                await self._relay.start()
                sessions = PoSessions(
                    bus=self._bus,
                    redis=self.redis,
                    replies=self._relay,
                    door=DOOR,
                    api_url=self.api_url,
                )
                self._conversation = Conversation(self._bus, self.redis, sessions, self.sink)
            return self._conversation

    async def ask(self, user: ChatUser, text: str, api_key: str) -> None:
        """Show the user's message, relay it to their PO worker (in the background), and
        keep the user's task notifications running."""
        conversation = await self._core()
        message_id = int(await self.redis.incr("console:chat:ids"))
        await self.sink.post(user.chat_id, message_id, text, "you")
        notifier = self._notifier(user, api_key)
        task = asyncio.create_task(
            self._ask(conversation, user, text, notifier), name=f"console-chat:{user.user_id}"
        )
        self._asks.add(task)
        task.add_done_callback(self._asks.discard)

    async def _ask(
        self, conversation: Conversation, user: ChatUser, text: str, notifier: TaskNotifier
    ) -> None:
        try:
            await conversation.ask(user, text, request_id=f"console-{uuid.uuid4()}")
        except Exception as error:  # noqa: BLE001  # the page must hear of it; the API goes on
            log.warning("console_chat_failed", error=f"{type(error).__name__}: {error}")
            await self.sink.send(user.chat_id, f"⚠️ the PO agent could not answer ({error})")
        notifier.wake()

    def _notifier(self, user: ChatUser, api_key: str) -> TaskNotifier:
        found = self._notifiers.get(user.user_id)
        if found is not None:
            return found[0]
        assert self._bus is not None
        api = ApiClient(self.api_url, key=api_key)

        async def chat_for_owner(owner_id: int) -> int | None:
            return user.chat_id if owner_id == user.user_id else None

        notifier = TaskNotifier(
            self._bus,
            self.redis,
            api,
            self.sink,
            door=DOOR,
            owner_id=user.user_id,
            chat_for_owner=chat_for_owner,
            poll_s=1.0,
        )
        running = asyncio.create_task(notifier.run(), name=f"console-notifier:{user.user_id}")
        self._notifiers[user.user_id] = (notifier, api, running)
        return notifier

    async def history(self, user_id: int) -> list[dict[str, Any]]:
        """The user's chat as it stands: each message's latest text, oldest first."""
        latest: dict[str, dict[str, Any]] = {}
        entries: Any = await self.redis.xrange(chat_stream(user_id))
        for entry_id, fields in entries:
            message = {_s(k): _s(v) for k, v in fields.items()}
            message["entry"] = _s(entry_id)
            latest[message["id"]] = message
        return list(latest.values())

    async def close(self) -> None:
        """Stop the notifiers, the questions in flight and the reply relay."""
        tasks = [running for _, _, running in self._notifiers.values()] + list(self._asks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _, api, _ in self._notifiers.values():
            await api.aclose()
        if self._conversation is not None:
            await self._conversation.aclose()
        if self._relay is not None:
            with contextlib.suppress(Exception):
                await self._relay.stop()


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
