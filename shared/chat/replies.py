"""`ReplyRelay`: the front doors' requests on `worker:commands` and their replies, never lost
or stolen although langgraph consumes the same reply stream.

`worker:responses` has two readers: langgraph (the registry's consumer) and the front doors
(the `telegram-bot` observer group). An entry is deleted only once both groups acknowledged
it, so neither can take a reply away from the other. The relay consumes the observer group;
a response whose `request_id` a front door waits for (marked in Redis *before* the command is
published) is pushed onto that request's reply list, where the requester's BLPOP takes it;
any other response (langgraph's, the scheduler's) is only acknowledged. Any process of the
group relays for all of them: the bot delivers the replies of an `orchestrator chat` and the
other way round; a relay that dies leaves its entries to the others after the reclaim time.

    async with ReplyRelay(bus, redis) as replies:
        reply = await replies.request(command, timeout_s=60)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType

import redis.asyncio as aioredis
import structlog

from shared import registry
from shared.chat.keys import reply_key, reply_wanted_key
from shared.contracts import (
    CreateWorkerCommand,
    CreateWorkerResponse,
    DeleteWorkerCommand,
    DeleteWorkerResponse,
    SendMessageCommand,
    SendMessageResponse,
)
from shared.messaging import Bus, Consumer, MessageContext, RequestTimeoutError

__all__ = ["ReplyRelay"]

log = structlog.get_logger("shared.chat")

WorkerCommand = CreateWorkerCommand | SendMessageCommand | DeleteWorkerCommand
WorkerReply = CreateWorkerResponse | SendMessageResponse | DeleteWorkerResponse

_REPLY_TYPES: dict[type[WorkerCommand], type[WorkerReply]] = {
    CreateWorkerCommand: CreateWorkerResponse,
    SendMessageCommand: SendMessageResponse,
    DeleteWorkerCommand: DeleteWorkerResponse,
}
_WAIT_SLICE_S = 1.0
"""Longest single BLPOP (kept below any client socket timeout)."""
_REPLY_TTL_S = 600
_RECLAIM_IDLE_MS = 10_000
"""A relay's handler is one script call: entries of a dead relay are taken over soon."""
_STOP_S = 5.0

_PUSH_IF_WANTED = """
-- KEYS[1] the request's wanted marker, KEYS[2] its reply list; ARGV[1] the reply, ARGV[2] ttl
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return 1
"""


class ReplyRelay:
    """Requests on `worker:commands` whose replies come back through the observer group."""

    def __init__(self, bus: Bus, redis: aioredis.Redis, *, block_ms: int = 1_000) -> None:
        self.bus = bus
        self.redis = redis
        self.commands = registry.get("worker:commands").name
        self.consumer: Consumer = bus.consumer(
            registry.get("worker:responses").name,
            self._relay,
            block_ms=block_ms,
            reclaim_idle_ms=_RECLAIM_IDLE_MS,
        )
        self._push = redis.register_script(_PUSH_IF_WANTED)
        self._group_ready = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ReplyRelay:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Create the observer group (so no reply is deleted before it is relayed), consume."""
        await self._ensure_group()
        if self._task is None:
            self._task = asyncio.create_task(self.consumer.run(), name="chat-reply-relay")

    async def stop(self) -> None:
        """Stop consuming (in-flight relays finish first)."""
        if self._task is None:
            return
        self.consumer.stop()
        done, _ = await asyncio.wait({self._task}, timeout=_STOP_S)
        if not done:
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def run(self) -> None:
        """Relay until cancelled (an actor that only relays, e.g. the idle telegram-bot)."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def request(self, command: WorkerCommand, *, timeout_s: float) -> WorkerReply:
        """Publish `command` and wait for its reply; `RequestTimeoutError` after `timeout_s`."""
        await self._ensure_group()
        request_id = command.request_id
        wanted, answer = reply_wanted_key(request_id), reply_key(request_id)
        await self.redis.set(wanted, "1", ex=int(timeout_s) + _REPLY_TTL_S)
        try:
            await self.bus.publish(self.commands, command)
            reply_type = _REPLY_TYPES[type(command)]
            deadline = time.monotonic() + timeout_s
            while (left_s := deadline - time.monotonic()) > 0:
                popped = await self.redis.blpop([answer], timeout=min(left_s, _WAIT_SLICE_S))
                if popped is not None:
                    return reply_type.model_validate_json(popped[1])
            raise RequestTimeoutError(
                f"no reply to request {request_id!r} on worker:responses within {timeout_s:g} s"
            )
        finally:
            await self.redis.delete(wanted, answer)

    async def _ensure_group(self) -> None:
        if not self._group_ready:
            await self.consumer.ensure_groups()
            self._group_ready = True

    async def _relay(self, message: WorkerReply, ctx: MessageContext) -> None:
        """Hand a reply to the front door waiting for it; ignore the others' replies."""
        request_id = message.request_id
        pushed = await self._push(
            keys=[reply_wanted_key(request_id), reply_key(request_id)],
            args=[message.model_dump_json(), _REPLY_TTL_S],
        )
        if pushed:
            log.debug("reply_relayed", request_id=request_id)
