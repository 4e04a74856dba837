"""`PoSessions`: each user's PO worker, found through a Redis mapping or created on demand.

The mapping `chat:po:{user_id}` names the worker (the same for every front door). A worker
counts as alive while the worker-manager's registry record says it can take input; otherwise
a new one is created with a `CreateWorkerCommand` on `worker:commands`, its reply taken from
`worker:responses` through the `ReplyRelay`. The command asks for the user's API token by
reference only; the worker-manager mints it into the worker's environment. A worker that is
replaced (dead, or given up on) gets a `DeleteWorkerCommand`, so its files go and its token
is revoked.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from shared import registry
from shared.chat.errors import PoWorkerUnavailableError
from shared.chat.keys import WORKER_LIVE_STATUSES, session_key, worker_record_key
from shared.chat.po_profile import po_worker_command
from shared.chat.replies import ReplyRelay
from shared.chat.sink import ChatUser
from shared.contracts import AgentName, CreateWorkerResponse, DeleteWorkerCommand, new_id
from shared.messaging import Bus, MessagingError

__all__ = ["PoSessions"]

log = structlog.get_logger("shared.chat")


@dataclass
class PoSessions:
    """Finds or creates PO workers for one front door (`door`: `telegram`, `cli`)."""

    bus: Bus
    redis: aioredis.Redis
    replies: ReplyRelay
    """Carries the create commands and brings their replies back (it must be started)."""
    door: str
    api_url: str
    """The API's base URL as the worker reaches it."""
    agent: AgentName = "claude-code"
    create_timeout_s: float = 60.0
    _locks: dict[int, asyncio.Lock] = field(default_factory=dict)

    async def current(self, user: ChatUser) -> str | None:
        """The id of the user's PO worker when it is alive, else None."""
        worker_id = await self._mapped(user)
        if worker_id is None:
            return None
        return worker_id if await self.is_alive(worker_id) else None

    async def is_alive(self, worker_id: str) -> bool:
        """True while the worker-manager's record of the worker says it takes input."""
        status = await self.redis.hget(worker_record_key(worker_id), "status")
        if status is None:
            return False
        text = status.decode() if isinstance(status, bytes) else str(status)
        return text in WORKER_LIVE_STATUSES

    async def ensure(self, user: ChatUser) -> str:
        """The user's live PO worker, created when there is none or it died."""
        lock = self._locks.setdefault(user.user_id, asyncio.Lock())
        async with lock:
            worker_id = await self._mapped(user)
            if worker_id is not None:
                if await self.is_alive(worker_id):
                    return worker_id
                await self._retire(worker_id)
            return await self._create(user)

    async def forget(self, user: ChatUser, worker_id: str) -> None:
        """Give up on `worker_id` (it died or stopped answering): drop the mapping when it
        still names it, and have the worker-manager delete it (its token is revoked)."""
        if await self._mapped(user) == worker_id:
            await self.redis.delete(session_key(user.user_id))
        await self._retire(worker_id)

    async def _mapped(self, user: ChatUser) -> str | None:
        raw = await self.redis.get(session_key(user.user_id))
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def _retire(self, worker_id: str) -> None:
        """Ask for the worker's deletion; nobody waits for the answer."""
        command = DeleteWorkerCommand(request_id=new_id(), worker_id=worker_id)
        try:
            await self.bus.publish(registry.get("worker:commands").name, command)
        except (MessagingError, RedisError) as error:  # the manager's sweep revokes it anyway
            log.warning("po_worker_retire_failed", worker_id=worker_id, error=str(error))
            return
        log.info("po_worker_retired", worker_id=worker_id)

    async def _create(self, user: ChatUser) -> str:
        command = po_worker_command(user_id=user.user_id, agent=self.agent, api_url=self.api_url)
        try:
            reply = await self.replies.request(command, timeout_s=self.create_timeout_s)
        except MessagingError as error:
            raise PoWorkerUnavailableError(
                f"no worker-manager answered within {self.create_timeout_s:g} s ({error})"
            ) from None
        if not isinstance(reply, CreateWorkerResponse) or not reply.success or not reply.worker_id:
            detail = getattr(reply, "error", None) or "no detail"
            raise PoWorkerUnavailableError(f"the PO worker could not be started: {detail}")
        await self.redis.set(session_key(user.user_id), reply.worker_id)
        log.info("po_worker_created", user_id=user.user_id, worker_id=reply.worker_id)
        return reply.worker_id
