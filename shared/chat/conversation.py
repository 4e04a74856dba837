"""`Conversation`: a user's message to their PO worker and the answer back, restart-safe.

A question is relayed as a `WorkerInputMessage` on `worker:{id}:input`, with the caller's
`request_id` (derived from the chat update, so a redelivered update is the same question).
Before waiting, the question is recorded in `chat:{door}:pending`; the answer is read from
`worker:{id}:output` by `request_id` after the input's entry id. A restarted front door calls
`resume_pending()`, which waits again for every recorded question: the answer is still in the
output stream. Delivered answers are marked, so no question is answered twice.

An answer holding the PO's `[[ask-secret <project> NAME]]` line opens a secret prompt
(`SecretPrompts`, when the front door gives one): the line is replaced by the prompt, and
the front door takes the user's next message as the value, never relaying it here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis
import structlog

from shared import registry
from shared.chat.errors import ChatError
from shared.chat.keys import answered_key, pending_key
from shared.chat.secret_prompt import SecretPrompts
from shared.chat.sessions import PoSessions
from shared.chat.sink import ChatSink, ChatUser, split_text
from shared.contracts import WorkerInputMessage, WorkerOutputMessage
from shared.messaging import Bus, RequestTimeoutError
from shared.messaging.cancel import raise_if_cancelling

__all__ = ["ChatOptions", "Conversation"]

log = structlog.get_logger("shared.chat")

_ANSWERED_TTL_S = 7 * 86400


@dataclass(frozen=True)
class ChatOptions:
    """Timing of conversations."""

    answer_timeout_s: int = 1800
    """How long the PO agent may take for one answer (`WorkerInputMessage.timeout`)."""
    liveness_poll_s: float = 1.0
    """How often a waiting question checks that the PO worker is still alive."""
    typing_interval_s: float = 4.0
    """How often the typing indicator is renewed while waiting (Telegram shows it ~5 s)."""


@dataclass(frozen=True)
class _Pending:
    user: ChatUser
    worker_id: str
    entry_id: str
    text: str
    attempt: int = 1


class Conversation:
    """Relays each user's messages to their PO worker and delivers the answers."""

    def __init__(
        self,
        bus: Bus,
        redis: aioredis.Redis,
        sessions: PoSessions,
        sink: ChatSink,
        options: ChatOptions | None = None,
        *,
        prompts: SecretPrompts | None = None,
    ) -> None:
        self.bus = bus
        self.prompts = prompts
        self.redis = redis
        self.sessions = sessions
        self.sink = sink
        self.options = options or ChatOptions()
        self.door = sessions.door
        self._waiting: set[str] = set()
        self._resumed: set[asyncio.Task[None]] = set()

    async def ask(self, user: ChatUser, text: str, *, request_id: str) -> None:
        """Relay `text` to the user's PO worker and deliver its answer (once per request)."""
        if request_id in self._waiting or await self.redis.exists(
            answered_key(self.door, request_id)
        ):
            return
        self._waiting.add(request_id)
        try:
            pending = await self._load(request_id)
            if pending is None:
                try:
                    pending = await self._send(user, text, request_id, attempt=1)
                except ChatError as error:
                    await self._deliver(user, request_id, f"⚠️ {error}")
                    return
            await self._wait_and_deliver(request_id, pending)
        finally:
            self._waiting.discard(request_id)

    async def resume_pending(self) -> int:
        """Wait again for every question recorded before a restart; returns how many."""
        raw = await self.redis.hgetall(pending_key(self.door))
        started = 0
        for request_id_raw in raw:
            request_id = _text(request_id_raw)
            pending = await self._load(request_id)
            if pending is not None and request_id not in self._waiting:
                started += 1
                task = asyncio.create_task(
                    self.ask(pending.user, pending.text, request_id=request_id),
                    name=f"chat-resume:{request_id}",
                )
                self._resumed.add(task)
                task.add_done_callback(self._resumed.discard)
        return started

    async def aclose(self) -> None:
        """Stop waiting for resumed questions (they stay pending for the next start)."""
        tasks = list(self._resumed)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # internals ----------------------------------------------------------------------------

    async def _load(self, request_id: str) -> _Pending | None:
        raw = await self.redis.hget(pending_key(self.door), request_id)
        if raw is None:
            return None
        data = json.loads(raw)
        return _Pending(
            user=ChatUser(**data["user"]),
            worker_id=data["worker_id"],
            entry_id=data["entry_id"],
            text=data["text"],
            attempt=int(data.get("attempt", 1)),
        )

    async def _send(self, user: ChatUser, text: str, request_id: str, *, attempt: int) -> _Pending:
        await self.sink.typing(user.chat_id)
        worker_id = await self.sessions.ensure(user)
        message = WorkerInputMessage(
            request_id=request_id, prompt=text, timeout=self.options.answer_timeout_s
        )
        stream = registry.get("worker:{id}:input").format(id=worker_id)
        # the turn's correlation id is its request id (the same on a re-send): the PO's
        # tasks, their flows and the deploys they start carry it
        entry_id = await self.bus.publish(stream, message, correlation_id=request_id)
        log.info(
            "chat_turn_sent",
            request_id=request_id,
            correlation_id=request_id,
            worker_id=worker_id,
            attempt=attempt,
        )
        pending = _Pending(user, worker_id, entry_id, text, attempt)
        record = {**asdict(pending), "user": asdict(user)}
        await self.redis.hset(pending_key(self.door), request_id, json.dumps(record))
        return pending

    async def _wait_and_deliver(self, request_id: str, pending: _Pending) -> None:
        while True:
            outcome = await self._wait(request_id, pending)
            if isinstance(outcome, WorkerOutputMessage):
                text = _answer_text(outcome)
                if self.prompts is not None and outcome.status == "success":
                    text = await self.prompts.from_answer(pending.user, text)
                await self._deliver(pending.user, request_id, text)
                return
            await self.sessions.forget(pending.user, pending.worker_id)
            if outcome == "timeout" or pending.attempt >= 2:
                reason = (
                    "no answer from your PO agent in time"
                    if outcome == "timeout"
                    else "your PO worker stopped twice while answering"
                )
                await self._deliver(pending.user, request_id, f"⚠️ {reason}; please try again.")
                return
            log.info("po_worker_died_resending", worker_id=pending.worker_id)
            try:
                pending = await self._send(
                    pending.user, pending.text, request_id, attempt=pending.attempt + 1
                )
            except ChatError as error:
                await self._deliver(pending.user, request_id, f"⚠️ {error}")
                return

    async def _wait(self, request_id: str, pending: _Pending) -> WorkerOutputMessage | str:
        """The answer, or `"died"` when the worker stopped, or `"timeout"`."""
        output_stream = registry.get("worker:{id}:output").format(id=pending.worker_id)
        deadline = time.monotonic() + self.options.answer_timeout_s + 30
        last_typing = time.monotonic()
        while time.monotonic() < deadline:
            raise_if_cancelling()  # a Redis call may have absorbed it
            with contextlib.suppress(RequestTimeoutError):
                reply = await self.bus.wait_reply(
                    output_stream,
                    request_id,
                    since_id=pending.entry_id,
                    timeout_s=self.options.liveness_poll_s,
                )
                if isinstance(reply, WorkerOutputMessage):
                    return reply
            if not await self.sessions.is_alive(pending.worker_id):
                return "died"
            if time.monotonic() - last_typing >= self.options.typing_interval_s:
                last_typing = time.monotonic()
                await self.sink.typing(pending.user.chat_id)
        return "timeout"

    async def _deliver(self, user: ChatUser, request_id: str, text: str) -> None:
        for chunk in split_text(text):
            await self.sink.send(user.chat_id, chunk)
        await self.redis.set(answered_key(self.door, request_id), "1", ex=_ANSWERED_TTL_S)
        await self.redis.hdel(pending_key(self.door), request_id)


def _answer_text(output: WorkerOutputMessage) -> str:
    if output.status == "success":
        return output.response or "(the PO agent answered nothing)"
    if output.status == "timeout":
        partial = f"\n\n{output.response}" if output.response else ""
        return f"⚠️ the PO agent ran out of time.{partial}"
    return f"⚠️ the PO agent failed: {output.error or 'no detail'}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
