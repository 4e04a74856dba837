"""`worker:responses` is read by langgraph's consumer group and by the front doors: neither
may lose or take the other's replies, even when the front door is slow to read.

The rest of the system runs in a thread of its own (its own event loop and Redis client, as
another process would): a worker-manager that answers every command at once, and the real
langgraph consumer of `worker:responses` (its handlers, runner and inbox). The front door's
loop is kept busy in bursts, as a loaded bot's would be, so replies arrive while it cannot
read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from services.langgraph.api import ApiAdapter
from services.langgraph.main import open_actor
from services.langgraph.settings import LanggraphSettings
from services.langgraph.store import FlowStore
from shared import registry
from shared.api_client import ApiClient
from shared.chat import ChatUser, PoSessions, ReplyRelay
from shared.chat.keys import worker_record_key
from shared.contracts import (
    CreateWorkerCommand,
    CreateWorkerResponse,
    DeleteWorkerCommand,
    DeleteWorkerResponse,
    SendMessageResponse,
)
from shared.messaging import Bus, MessageContext

USERS = 40
RESPONSES = registry.get("worker:responses").name


def langgraph_request_id(index: int) -> str:
    """A request id of langgraph's (`<task_id>~<step>`), of a task that has no flow here."""
    return f"task-{index}~send_spec"


@dataclass
class Backend:
    """The worker-manager and langgraph's response consumer, on a loop of their own."""

    redis_url: str
    data_dir: Path
    ready: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    error: list[BaseException] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)

    def run(self) -> None:
        """The thread's body."""
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test, which fails with it
            self.error.append(exc)
            self.ready.set()

    async def _main(self) -> None:
        redis: aioredis.Redis = aioredis.Redis.from_url(self.redis_url)
        bus = Bus(redis, actor=registry.Actor.WORKER_MANAGER)
        counter = iter(range(1_000_000))

        async def on_command(command: object, _ctx: MessageContext) -> None:
            if isinstance(command, DeleteWorkerCommand):
                reply = DeleteWorkerResponse(request_id=command.request_id, success=True)
                await bus.publish(RESPONSES, reply)
                return
            assert isinstance(command, CreateWorkerCommand)
            index = next(counter)
            worker_id = f"po-{index}"
            await redis.hset(worker_record_key(worker_id), "status", "running")
            own = SendMessageResponse(
                request_id=langgraph_request_id(index), success=True, response="done"
            )
            chat = CreateWorkerResponse(
                request_id=command.request_id, success=True, worker_id=worker_id
            )
            await bus.publish_many([(RESPONSES, own), (RESPONSES, chat)])
            self.answered.append(command.request_id)

        manager = bus.consumer(
            registry.get("worker:commands").name, on_command, concurrency=16, block_ms=100
        )
        settings = LanggraphSettings(data_dir=self.data_dir, reclaim_idle_ms=1_000)
        unused_api = ApiAdapter(ApiClient("http://127.0.0.1:9"))  # the handler never calls it
        try:
            async with open_actor(settings, redis, api=unused_api) as actor:
                [langgraph] = [c for c in actor.consumers if c.streams == [RESPONSES]]
                tasks = [asyncio.create_task(c.run()) for c in (manager, langgraph)]
                for consumer in (manager, langgraph):
                    await consumer.ensure_groups()
                self.ready.set()
                await asyncio.to_thread(self.stop.wait)
                for consumer in (manager, langgraph):
                    consumer.stop()
                await asyncio.wait(tasks, timeout=10)
        finally:
            await redis.aclose()


@contextlib.contextmanager
def backend_thread(redis_url: str, data_dir: Path) -> Iterator[Backend]:
    """Run the backend in a thread; stop and join it at the end."""
    backend = Backend(redis_url, data_dir)
    thread = threading.Thread(target=backend.run, name="backend", daemon=True)
    thread.start()
    try:
        assert backend.ready.wait(60), "the backend did not start"
        assert not backend.error, backend.error
        yield backend
    finally:
        backend.stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the backend thread did not stop"


async def keep_busy(burst_s: float = 0.1, pause_s: float = 0.02) -> None:
    """Block this loop in bursts (CPU work of a loaded front door)."""
    while True:
        time.sleep(burst_s)  # noqa: ASYNC251  # blocking on purpose: that is the load
        await asyncio.sleep(pause_s)


@pytest.fixture
async def relay(redis_client: aioredis.Redis) -> AsyncIterator[ReplyRelay]:
    """The front door's reply relay, running."""
    async with ReplyRelay(Bus(redis_client, actor=registry.Actor.TELEGRAM_BOT), redis_client) as r:
        yield r


async def test_many_po_sessions_and_langgraph_all_get_their_replies(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis, relay: ReplyRelay
) -> None:
    """40 PO workers created at once by a busy front door, while langgraph consumes the same
    stream: every create gets its reply, langgraph's inbox gets every one of its own, and
    the stream ends empty (each entry deleted once both groups acknowledged it)."""
    sessions = PoSessions(
        bus=relay.bus, redis=redis_client, replies=relay, door="t", api_url="http://api"
    )
    users = [ChatUser(user_id=i + 1, telegram_id=1000 + i, chat_id=1000 + i) for i in range(USERS)]
    with backend_thread(redis_url, tmp_path / "langgraph") as backend:
        busy = asyncio.create_task(keep_busy())
        try:
            results = await asyncio.gather(
                *(sessions.ensure(user) for user in users), return_exceptions=True
            )
        finally:
            busy.cancel()
            await asyncio.gather(busy, return_exceptions=True)
        lost = [r for r in results if isinstance(r, BaseException)]
        assert lost == []
        assert sorted(results) == sorted(f"po-{i}" for i in range(USERS))  # type: ignore[type-var]
        assert len(backend.answered) == USERS

        store = FlowStore(redis_client)
        inbox = [await store.get_answer(langgraph_request_id(i)) for i in range(USERS)]
        assert [answer is not None for answer in inbox] == [True] * USERS
        assert {answer["response"] for answer in inbox if answer} == {"done"}

        deadline = asyncio.get_running_loop().time() + 30
        while await redis_client.xlen(RESPONSES):
            assert asyncio.get_running_loop().time() < deadline, "entries were never deleted"
            await asyncio.sleep(0.05)
    assert not backend.error, backend.error


async def test_a_reply_is_relayed_by_another_front_door(
    tmp_path: Path, redis_url: str, redis_client: aioredis.Redis, relay: ReplyRelay
) -> None:
    """A front door whose own relay does not consume (e.g. `orchestrator chat` while the bot
    runs) still gets its reply: the running relay of the group hands it over."""
    idle = ReplyRelay(
        Bus(redis_client, actor=registry.Actor.TELEGRAM_BOT, consumer_name="chat-cli"),
        redis_client,
    )
    sessions = PoSessions(
        bus=idle.bus, redis=redis_client, replies=idle, door="cli", api_url="http://api"
    )
    with backend_thread(redis_url, tmp_path / "langgraph"):
        worker_id = await sessions.ensure(ChatUser(user_id=1, telegram_id=1, chat_id=1))
    assert worker_id == "po-0"
