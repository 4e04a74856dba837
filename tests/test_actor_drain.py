"""The actor contract: every consuming actor, started by its `run_actor(ctx)` and stopped
(cancelled) while a handler is in flight, lets that handler finish within the grace and
acknowledges its message: nothing is left pending, nothing is redelivered.

The handlers are replaced by a slow one (the contract is about start and stop, not about
what an actor does with a message); everything else is the actor's own wiring on a real
Redis.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from pydantic import BaseModel

from services.cli.actors import load_actor
from services.settings import SystemSettings
from shared import registry
from shared.actor import ActorContext, ActorStartError, run_parts
from shared.contracts import (
    DeleteWorkerCommand,
    EngineeringMessage,
    ProvisionerMessage,
    ScaffolderMessage,
)
from shared.messaging import Bus
from shared.redis_server import free_port
from shared.registry import Actor
from shared.settings import ApiSettings

GRACE_S = 6.0
HANDLER_S = 1.0
"""How long the slow handler takes once started (well inside the grace)."""


@dataclass
class Slow:
    """A handler that takes `HANDLER_S`; counts its calls and finishes."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    calls: int = 0
    finished: int = 0
    finished_at: float = 0.0

    async def __call__(self, *args: object, **kwargs: object) -> None:
        self.calls += 1
        self.started.set()
        await asyncio.sleep(HANDLER_S)
        self.finished += 1
        self.finished_at = time.monotonic()


def _patch_scaffolder(monkeypatch: pytest.MonkeyPatch, slow: Slow) -> None:
    monkeypatch.setattr("services.scaffolder.main.handle_scaffolder_message", slow)


def _patch_infra(monkeypatch: pytest.MonkeyPatch, slow: Slow) -> None:
    monkeypatch.setattr("services.infra_service.main.handle_provisioner_message", slow)


def _patch_worker_manager(monkeypatch: pytest.MonkeyPatch, slow: Slow) -> None:
    monkeypatch.setattr("services.worker_manager.main.CommandHandlers", lambda manager: slow)


def _patch_langgraph(monkeypatch: pytest.MonkeyPatch, slow: Slow) -> None:
    class Handlers:
        def __init__(self, runner: object) -> None:
            self.handle_engineering_message = slow
            self.handle_deploy_message = slow
            self.handle_worker_response = slow
            self.handle_result = slow

    monkeypatch.setattr("services.langgraph.main.Handlers", Handlers)


@dataclass(frozen=True)
class Case:
    actor: str
    stream: str
    message: BaseModel
    patch: Any


CASES = [
    Case(
        "scaffolder",
        "scaffolder:queue",
        ScaffolderMessage(
            project_id="p-1", repo_full_name="o/r", project_name="r", modules=["backend"]
        ),
        _patch_scaffolder,
    ),
    Case(
        "infra-service",
        "provisioner:queue",
        ProvisionerMessage(server_handle="s-1"),
        _patch_infra,
    ),
    Case(
        "worker-manager",
        "worker:commands",
        DeleteWorkerCommand(request_id="r-1", worker_id="w-1"),
        _patch_worker_manager,
    ),
    Case(
        "langgraph",
        "engineering:queue",
        EngineeringMessage(task_id="t-1", project_id="p-1", user_id=7),
        _patch_langgraph,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.actor for case in CASES])
async def test_a_stopped_actor_finishes_its_handler_and_acknowledges(
    case: Case,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    redis_url: str,
    redis_client: aioredis.Redis,
) -> None:
    slow = Slow()
    case.patch(monkeypatch, slow)
    settings = SystemSettings(
        data_dir=tmp_path,
        redis_url=redis_url,
        shutdown_grace_s=GRACE_S,
        api=ApiSettings(url="http://127.0.0.1:9"),  # nothing answers there
    )
    stream = registry.get(case.stream).name
    group = registry.get(case.stream).consumer_group
    await Bus(redis_client, actor=Actor.API).publish(stream, case.message)
    actor = asyncio.create_task(load_actor(case.actor)(ActorContext(settings, redis_url)))
    try:
        await asyncio.wait_for(slow.started.wait(), timeout=30)
    finally:
        stopped_at = time.monotonic()
        actor.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(actor, timeout=GRACE_S + 10)
    ended_at = time.monotonic()
    assert slow.finished == 1, "the handler in flight was cut short"
    assert slow.finished_at - stopped_at < GRACE_S
    assert ended_at - stopped_at < GRACE_S + 2
    pending = await redis_client.xpending(stream, group)
    assert pending["pending"] == 0, f"left pending (would be redelivered): {pending}"
    assert slow.calls == 1


# run_parts itself ---------------------------------------------------------------------------


class Part:
    """A drainable part whose work in flight takes `work_s` once stopped."""

    def __init__(self, work_s: float) -> None:
        self.work_s = work_s
        self.stopped = asyncio.Event()
        self.grace_s: float | None = None
        self.finished = False
        self.cancelled = False

    def stop(self, *, grace_s: float | None = None) -> None:
        self.grace_s = grace_s
        self.stopped.set()

    async def run(self) -> None:
        try:
            await self.stopped.wait()
            await asyncio.sleep(self.work_s)
            self.finished = True
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_parts_get_the_grace_and_loops_are_cancelled_at_once() -> None:
    part = Part(work_s=0.3)
    looping = asyncio.Event()
    loop_cancelled = asyncio.Event()

    async def loop() -> None:
        looping.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            loop_cancelled.set()
            raise

    ready = asyncio.Event()
    task = asyncio.create_task(
        run_parts("t", consumers=[part], background={"loop": loop}, shutdown_grace_s=2, ready=ready)
    )
    await asyncio.wait_for(ready.wait(), 5)
    await asyncio.wait_for(looping.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert part.finished
    assert not part.cancelled
    assert part.grace_s == 2
    assert loop_cancelled.is_set()


async def test_a_part_past_the_grace_is_cancelled() -> None:
    part = Part(work_s=60)
    task = asyncio.create_task(run_parts("t", consumers=[part], shutdown_grace_s=0.2))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert part.cancelled
    assert not part.finished
    assert time.monotonic() - started < 3


async def test_a_failing_part_stops_the_others_and_raises_its_error() -> None:
    part = Part(work_s=0.1)

    async def broken() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("broken loop")

    with pytest.raises(RuntimeError, match="broken loop"):
        await run_parts("t", consumers=[part], background={"b": broken}, shutdown_grace_s=2)
    assert part.finished  # stopped and drained, not cancelled


async def test_a_part_that_ends_before_ready_is_a_start_error() -> None:
    async def quits() -> None:
        return None

    ready = asyncio.Event()
    with pytest.raises(ActorStartError, match="ended before the actor was ready"):
        await run_parts(
            "t", background={"q": quits}, shutdown_grace_s=1, ready=ready, ready_when=lambda: False
        )
    assert not ready.is_set()


# the api: readiness and a start that fails --------------------------------------------------


def _api_settings(tmp_path: Path, redis_url: str, port: int) -> SystemSettings:
    return SystemSettings(
        data_dir=tmp_path, redis_url=redis_url, api=ApiSettings(port=port), shutdown_grace_s=2
    )


async def test_the_api_actor_signals_ready_and_stops_listening(
    tmp_path: Path, redis_url: str
) -> None:
    port = free_port()
    ready = asyncio.Event()
    ctx = ActorContext(_api_settings(tmp_path, redis_url, port), redis_url, api_ready=ready)
    actor = asyncio.create_task(load_actor("api")(ctx))
    try:
        await asyncio.wait_for(ready.wait(), timeout=60)
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"http://127.0.0.1:{port}/health")
        assert answer.status_code == 200
    finally:
        actor.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(actor, timeout=15)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # uvicorn let go of its port


async def test_the_api_actor_on_a_taken_port_is_a_start_error(
    tmp_path: Path, redis_url: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ready = asyncio.Event()
        ctx = ActorContext(_api_settings(tmp_path, redis_url, port), redis_url, api_ready=ready)
        with pytest.raises(ActorStartError):
            await asyncio.wait_for(load_actor("api")(ctx), timeout=60)
    assert not ready.is_set()
