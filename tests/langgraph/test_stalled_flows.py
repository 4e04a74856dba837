"""Stalled flows: living, waiting for nothing, their lease free. The sweeper continues them,
so a replica that died mid-step or a step that raised on an unreachable API does not leave
its flow to the next restart; a flow another live process advances is left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from services.langgraph.keys import lock_key
from services.langgraph.settings import LanggraphSettings
from services.langgraph.store import FlowStore, PendingWait
from services.langgraph.sweeper import Sweeper
from shared.messaging.keys import consumer_host


@dataclass
class Deps:
    settings: LanggraphSettings
    clock_s: Any = time.time


@dataclass
class KickRecorder:
    """A runner that records the kicks it is given (and fails the first of `failing`)."""

    store: FlowStore
    deps: Deps
    kicked: list[str] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)

    async def kick(self, task_id: str, *, reason: str = "sweep") -> None:
        self.kicked.append(task_id)
        if task_id in self.failing:
            self.failing.discard(task_id)
            raise RuntimeError("API unavailable: ReadError")


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    return process.pid


async def test_the_sweeper_continues_stalled_flows_only(redis_client: aioredis.Redis) -> None:
    """Kicked, once seen stalled at two passes in a row: a flow with no lease, and one whose
    lease a dead process of this host holds. Left alone: a flow at a wait, a flow a live
    process here holds, one another host holds."""
    store = FlowStore(redis_client)
    for task_id in ("stalled", "dead-holder", "waiting", "live-holder", "remote-holder"):
        await store.add_flow(task_id, "engineering")
    await store.set_wait(
        "waiting", PendingWait(request_id="r", step="agent", deadline_at=time.time() + 600)
    )
    here = consumer_host()
    holders = {
        "dead-holder": f"flow@{here}:{_dead_pid()}:a",
        "live-holder": f"flow@{here}:{os.getpid()}:b",
        "remote-holder": f"flow@elsewhere~0.0:{_dead_pid()}:c",
    }
    for task_id, holder in holders.items():
        await redis_client.set(lock_key(task_id), holder, px=30_000)
    runner = KickRecorder(store, Deps(LanggraphSettings()))
    sweeper = Sweeper(runner)  # type: ignore[arg-type]
    assert await sweeper.sweep_stalled() == []  # seen once: perhaps between two holders
    stalled = await sweeper.sweep_stalled()
    assert stalled == ["dead-holder", "stalled"]
    assert sorted(runner.kicked) == ["dead-holder", "stalled"]


async def test_a_kick_that_fails_is_tried_again_at_the_next_sweep(
    redis_client: aioredis.Redis,
) -> None:
    """The step raised (the API unreachable): the flow stays living and stalled, and the next
    pass continues it; a flow that ended is no longer among the living."""
    store = FlowStore(redis_client)
    await store.add_flow("flaky", "engineering")
    await store.add_flow("ended", "engineering")
    runner = KickRecorder(store, Deps(LanggraphSettings()), failing={"flaky"})
    sweeper = Sweeper(runner)  # type: ignore[arg-type]
    await sweeper.sweep_stalled()
    await sweeper.sweep_stalled()  # kicked; the failure is logged, not raised
    await store.finish_flow("ended")
    again = await sweeper.sweep_stalled()
    assert again == ["flaky"]
    assert runner.kicked.count("flaky") == 2
    assert runner.kicked.count("ended") == 1


async def test_no_living_flow_kicks_nothing(redis_client: aioredis.Redis) -> None:
    """An empty index: nothing read beyond it, nothing kicked."""
    runner = KickRecorder(FlowStore(redis_client), Deps(LanggraphSettings()))
    sweeper = Sweeper(runner)  # type: ignore[arg-type]
    assert await sweeper.sweep_stalled() == []
    assert await sweeper.sweep_stalled() == []
    assert runner.kicked == []
