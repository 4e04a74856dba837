"""Flow bookkeeping in Redis: which flows live, what each waits for, answers, leases.

The checkpointer holds each flow's state; this store only indexes it, so the sweeper finds
the flows to resume without reading every checkpoint: flows at an interrupt (with the
request they wait for and its deadline), answers that arrived (the inbox, keyed by
request_id), and a per-task lease so two replicas never advance one flow at once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any, Literal

import redis.asyncio as aioredis
from pydantic import BaseModel

from services.langgraph.keys import (
    FLOWS_KEY,
    WAITS_KEY,
    answer_key,
    integration_key,
    lock_key,
    turn_queue_key,
)
from shared.messaging.cancel import raise_if_cancelling
from shared.messaging.keys import consumer_died_here, default_consumer_name
from shared.steps import step_request_id

__all__ = ["TURN_STEP", "FlowKind", "FlowStore", "PendingWait"]

FlowKind = Literal["engineering", "deploy"]
ANSWER_TTL_S = 7 * 86400
TURN_STEP = "integrate_turn"
"""The step of a flow waiting for its project's integration turn (its request id's)."""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class PendingWait(BaseModel):
    """What a flow at an interrupt waits for."""

    request_id: str
    step: str
    deadline_at: float
    """Epoch seconds after which the wait fails its task."""


class FlowStore:
    """The Redis index of flows; safe to share between every flow of a process."""

    def __init__(self, redis: aioredis.Redis, *, lock_ttl_ms: int = 30_000) -> None:
        self.redis = redis
        self.lock_ttl_ms = lock_ttl_ms
        self._local: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}
        self.woken = asyncio.Event()
        """Set when an answer that a waiting flow of this process may take was put in the
        inbox by this process (a turn given on): the sweeper looks at once."""

    # flows --------------------------------------------------------------------------------

    async def add_flow(self, task_id: str, kind: FlowKind) -> None:
        """Record a living flow."""
        await self.redis.hset(FLOWS_KEY, task_id, kind)

    async def finish_flow(self, task_id: str) -> None:
        """Forget a flow that ended (and whatever it waited for)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(FLOWS_KEY, task_id)
            pipe.hdel(WAITS_KEY, task_id)
            await pipe.execute()

    async def flows(self) -> dict[str, FlowKind]:
        """Every living flow: task_id → graph name."""
        raw = await self.redis.hgetall(FLOWS_KEY)
        found: dict[str, FlowKind] = {}
        for key, value in raw.items():
            kind = _text(value)
            if kind in ("engineering", "deploy"):
                found[_text(key)] = "engineering" if kind == "engineering" else "deploy"
        return found

    async def kind_of(self, task_id: str) -> FlowKind | None:
        """The graph of a living flow, or None when the flow ended (or never started)."""
        raw = await self.redis.hget(FLOWS_KEY, task_id)
        kind = None if raw is None else _text(raw)
        if kind == "engineering":
            return "engineering"
        return "deploy" if kind == "deploy" else None

    # waits --------------------------------------------------------------------------------

    async def set_wait(self, task_id: str, wait: PendingWait) -> None:
        """Record what the flow waits for."""
        await self.redis.hset(WAITS_KEY, task_id, wait.model_dump_json())

    async def clear_wait(self, task_id: str) -> None:
        """The flow no longer waits."""
        await self.redis.hdel(WAITS_KEY, task_id)

    async def waits(self) -> dict[str, PendingWait]:
        """Every flow at an interrupt: task_id → what it waits for."""
        raw = await self.redis.hgetall(WAITS_KEY)
        return {_text(k): PendingWait.model_validate_json(v) for k, v in raw.items()}

    # inbox --------------------------------------------------------------------------------

    async def put_answer(self, request_id: str, answer: dict[str, Any]) -> None:
        """Keep the answer to a request until its flow takes it (idempotent)."""
        await self.redis.set(answer_key(request_id), json.dumps(answer), ex=ANSWER_TTL_S)

    async def get_answer(self, request_id: str) -> dict[str, Any] | None:
        """The answer to a request, if it arrived."""
        raw = await self.redis.get(answer_key(request_id))
        if raw is None:
            return None
        found = json.loads(raw)
        return found if isinstance(found, dict) else None

    async def drop_answer(self, request_id: str) -> None:
        """Forget the answer to a request (a wait that is taken up again later)."""
        await self.redis.delete(answer_key(request_id))

    async def answered(self, request_ids: list[str]) -> list[bool]:
        """For each request, whether its answer arrived (one round trip)."""
        if not request_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for request_id in request_ids:
                pipe.exists(answer_key(request_id))
            return [bool(n) for n in await pipe.execute()]

    # leases -------------------------------------------------------------------------------

    async def leased(self, task_ids: list[str]) -> list[bool]:
        """For each flow, whether a live process holds its lease (one round trip): a lease
        of a process of this host that is gone counts as free, as `lock` would break it."""
        if not task_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.get(lock_key(task_id))
            holders = await pipe.execute()
        return [h is not None and not consumer_died_here(_text(h)) for h in holders]

    def lock(self, task_id: str, *, wait_s: float = 60.0) -> AbstractAsyncContextManager[None]:
        """Hold the flow's lease: one advancer per flow in this process and across replicas.

        `TimeoutError` when the lease stays held elsewhere for `wait_s`."""
        return self._lease(lock_key(task_id), f"the flow of task {task_id}", "flow", wait_s)

    # integration turns -------------------------------------------------------------------

    async def take_turn(self, project_id: str, task_id: str, *, ttl_ms: int) -> str:
        """Take (or keep) the project's integration turn for a task; answer who holds it.

        The turn belongs to a task, not a process: a flow resumed after a crash still holds
        it, and it is given back when the task lands or ends (`release_turn`); `ttl_ms`
        bounds a turn whose flow was lost for good."""
        key = integration_key(project_id)
        if await self.redis.set(key, task_id, nx=True, px=ttl_ms):
            await self.redis.zrem(turn_queue_key(project_id), task_id)
            return task_id
        holder = await self.redis.get(key)
        if holder is None:  # released meanwhile
            return await self.take_turn(project_id, task_id, ttl_ms=ttl_ms)
        if _text(holder) == task_id:
            await self.redis.eval(_RENEW, 1, key, task_id, ttl_ms)
        return _text(holder)

    async def release_turn(self, project_id: str, task_id: str) -> bool:
        """Give the turn back if this task holds it; True when it did. The first task in
        line (if any) is told at once: an answer to its turn's wait in the inbox."""
        released = bool(await self.redis.eval(_RELEASE, 1, integration_key(project_id), task_id))
        if released:
            first = await self.redis.zrange(turn_queue_key(project_id), 0, 0)
            if first and isinstance(first[0], bytes | str):
                waiter = _text(first[0])
                await self.put_answer(step_request_id(waiter, TURN_STEP), {"turn": "free"})
                self.woken.set()
        return released

    async def queue_for_turn(self, project_id: str, task_id: str, since: float) -> None:
        """The task waits for the project's turn (its place kept from its first wait)."""
        await self.redis.zadd(turn_queue_key(project_id), {task_id: since}, nx=True)

    async def leave_turn_queue(self, project_id: str, task_id: str) -> None:
        """The task no longer waits for the project's turn (it ended)."""
        await self.redis.zrem(turn_queue_key(project_id), task_id)

    @asynccontextmanager
    async def _lease(self, key: str, what: str, role: str, wait_s: float) -> AsyncIterator[None]:
        local = self._local.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with local:
                # named like a consumer (host, pid), so a restarted process can tell that the
                # holder of a lease it finds is a dead process of this host and break it
                token = default_consumer_name(role, tag=uuid.uuid4().hex)
                await self._acquire(key, what, token, wait_s)
                renew = asyncio.create_task(self._renew(key, token))
                try:
                    yield
                finally:
                    renew.cancel()
                    with suppress(asyncio.CancelledError):
                        await renew
                    await self.redis.eval(_RELEASE, 1, key, token)
        finally:
            self._users[key] -= 1
            if self._users[key] == 0:
                del self._users[key]
                self._local.pop(key, None)

    async def _acquire(self, key: str, what: str, token: str, wait_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while not await self.redis.set(key, token, nx=True, px=self.lock_ttl_ms):
            holder = await self.redis.get(key)
            if holder is not None and consumer_died_here(_text(holder)):
                # its process is gone: no need to wait out the lease
                await self.redis.eval(_RELEASE, 1, key, _text(holder))
                continue
            if loop.time() >= deadline:
                raise TimeoutError(f"{what} is held by another process")
            await asyncio.sleep(0.05)

    async def _renew(self, key: str, token: str) -> None:
        while True:
            raise_if_cancelling()  # the last renewal may have absorbed it
            await asyncio.sleep(self.lock_ttl_ms / 3000)
            await self.redis.eval(_RENEW, 1, key, token, self.lock_ttl_ms)
