"""A process started again after a crash takes over at once what its dead predecessor held:
entries pending in the hands of a consumer of this host whose process is gone are claimed
without waiting out the reclaim idle time; those of a live process or another host are not."""

from __future__ import annotations

import socket
import subprocess
import sys

import redis.asyncio as aioredis

from shared import registry
from shared.contracts import EngineeringMessage
from shared.messaging import Bus, MessageContext
from shared.messaging.keys import consumer_died_here, consumer_host, default_consumer_name
from tests.support.messaging import Running, engineering
from tests.support.waiting import eventually

ENGINEERING = registry.get("engineering:queue").name
GROUP = "langgraph"


def _dead_pid() -> int:
    """The pid of a process that has exited (and was reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    return process.pid


def test_which_consumer_names_died_here() -> None:
    """Only a default name of this host with a gone process counts as dead here."""
    host = consumer_host()
    dead = _dead_pid()
    assert consumer_died_here(f"langgraph@{host}:{dead}:a1b2c3")
    assert not consumer_died_here(default_consumer_name("langgraph"))  # this very process
    assert not consumer_died_here(f"langgraph@not-{host}:{dead}:a1b2c3")
    assert not consumer_died_here(f"langgraph@{socket.gethostname()}~1:{dead}:a1b2c3")
    assert not consumer_died_here("c1")
    assert not consumer_died_here(f"langgraph@{host}:pid:a1b2c3")


async def test_a_dead_predecessors_entries_are_taken_over_at_once(
    bus: Bus, redis_client: aioredis.Redis
) -> None:
    """Three entries are held: by a dead consumer of this host, by a live one (this process)
    and by a consumer of another host. A new consumer with a 60 s reclaim idle time handles the
    dead one's entry at once and leaves the other two pending where they are."""
    host = consumer_host()
    holders = {
        "t-dead": f"langgraph@{host}:{_dead_pid()}:dead00",
        "t-live": default_consumer_name("langgraph"),
        "t-elsewhere": f"langgraph@{host}-other:{_dead_pid()}:away00",
    }
    await redis_client.xgroup_create(ENGINEERING, GROUP, id="0", mkstream=True)
    for task_id, holder in holders.items():
        await bus.publish(ENGINEERING, engineering(task_id))
        read = await redis_client.xreadgroup(GROUP, holder, {ENGINEERING: ">"}, count=1)
        assert read, "the entry was not delivered to its holder"
    handled: list[tuple[str, int]] = []

    async def handle(message: EngineeringMessage, ctx: MessageContext) -> None:
        handled.append((message.task_id, ctx.attempt))

    consumer = bus.consumer(ENGINEERING, handle, reclaim_idle_ms=60_000, block_ms=100)
    async with Running(consumer):
        await eventually(lambda: handled == [("t-dead", 2)], timeout_s=10)

        async def acked() -> bool:  # the entry is acknowledged just after its handler returns
            return int((await redis_client.xpending(ENGINEERING, GROUP))["pending"]) <= 2

        await eventually(acked, timeout_s=10)
        summary = await redis_client.xpending(ENGINEERING, GROUP)
    assert int(summary["pending"]) == 2
    still = {row["name"].decode(): int(row["pending"]) for row in summary["consumers"]}
    assert still == {holders["t-live"]: 1, holders["t-elsewhere"]: 1}
