"""`TaskNotifier` on its own: a chat that cannot be reached does not stop the notifier."""

from __future__ import annotations

import asyncio
import random

import redis.asyncio as aioredis

from shared import registry
from shared.api_client.schemas import UserCreate
from shared.chat import TaskNotifier
from shared.chat.keys import notify_task_key
from shared.contracts import ProjectCreate, TaskCreate, TaskDTO, TaskType
from shared.messaging import Bus
from tests.chat.system import ChatSystem
from tests.support.waiting import eventually


class Sink:
    """Records messages; refuses to send to chat 13 (a user who blocked the bot)."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    async def send(self, chat_id: int, text: str) -> int:
        if chat_id == 13:
            raise RuntimeError("Forbidden: bot was blocked by the user")
        self.sent.append((chat_id, text))
        return len(self.sent)

    async def edit(self, chat_id: int, message_id: int, text: str) -> None:
        self.sent.append((chat_id, text))

    async def typing(self, chat_id: int) -> None:
        """Nothing."""


async def test_an_unreachable_chat_is_given_up_and_others_still_notified(
    po_system: ChatSystem, redis_client: aioredis.Redis
) -> None:
    """The blocked user's task is marked undeliverable; the next user's task is announced."""
    async with po_system.api() as api:
        blocked = await api.create_user(UserCreate(telegram_id=13))
        reachable = await api.create_user(UserCreate(telegram_id=14))
        chats = {blocked.id: 13, reachable.id: 14}

        async def chat_for_owner(owner_id: int) -> int | None:
            return chats.get(owner_id)

        sink = Sink()
        notifier = TaskNotifier(
            Bus(redis_client, actor=registry.Actor.TELEGRAM_BOT),
            redis_client,
            api,
            sink,
            door="test",
            chat_for_owner=chat_for_owner,
            poll_s=0.1,
        )
        running = asyncio.create_task(notifier.run())
        try:
            for user_id in (blocked.id, reachable.id):
                project = await api.create_project(ProjectCreate(name="p"), owner_id=user_id)
                await api.create_task(
                    TaskCreate(project_id=project.id, type=TaskType.ENGINEERING, spec="x")
                )
            await eventually(lambda: any(chat == 14 and "✅" in t for chat, t in sink.sent))
            assert not running.done()
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    phases = {
        str(await redis_client.hget(notify_task_key("test", task.id), "phase"))
        for task in await api_tasks(po_system)
    }
    assert phases == {"b'done'", "b'undeliverable'"}
    assert all(chat == 14 for chat, _ in sink.sent)


async def test_the_notifier_stops_when_cancelled_at_any_instant(
    po_system: ChatSystem, redis_client: aioredis.Redis
) -> None:
    """A cancellation is never lost, even one that lands while a Redis command is on the wire
    (redis-py absorbs it there): before the fix, about 1 in 5 of these notifiers polled on."""
    async with po_system.api() as api:
        user = await api.create_user(UserCreate(telegram_id=14))
        for _ in range(3):
            project = await api.create_project(ProjectCreate(name="p"), owner_id=user.id)
            await api.create_task(
                TaskCreate(project_id=project.id, type=TaskType.ENGINEERING, spec="x")
            )

        async def chat_for_owner(owner_id: int) -> int | None:
            return 14

        rng = random.Random(7)
        stuck = []
        for attempt in range(120):
            notifier = TaskNotifier(
                Bus(redis_client, actor=registry.Actor.TELEGRAM_BOT),
                redis_client,
                api,
                Sink(),
                door=f"cancel-{attempt}",
                chat_for_owner=chat_for_owner,
                poll_s=0.0,  # always discovering: always on the wire
            )
            running = asyncio.create_task(notifier.run())
            await asyncio.sleep(rng.uniform(0, 0.05))
            running.cancel()
            _, pending = await asyncio.wait([running], timeout=5)
            if pending:
                stuck.append(attempt)
                running.cancel()
            assert running.cancelled() or running in pending
        assert not stuck, f"notifiers {stuck} went on after their cancellation"


async def api_tasks(po_system: ChatSystem) -> list[TaskDTO]:
    """Every task of the system."""
    async with po_system.api() as api:
        return list((await api.list_tasks()).items)
