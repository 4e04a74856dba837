"""The actor contract: what every `services/<actor>/main.py:run_actor(ctx)` receives, and the
one way an actor runs its parts.

    async def run_actor(ctx: ActorContext) -> None:
        ...  # build the actor's consumers and loops from ctx.settings / ctx.redis()
        await run_parts(
            "scaffolder",
            consumers=[consumer],
            background={"reconcile": reconcile_loop},
            shutdown_grace_s=ctx.settings.shutdown_grace_s,
        )

`run_parts` starts every part, signals readiness, runs until it is cancelled (or a part
fails), then shuts down the same way for every actor: each consumer is told to stop (it
reads nothing new) and gets `shutdown_grace_s` to finish its in-flight handlers, which are
then acknowledged; background loops are cancelled at once; whatever outlives the grace is
cancelled (its entries stay pending and are redelivered). Closing what the actor opened
(clients, databases) stays the actor's, around the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
import structlog

from shared.settings import Settings

__all__ = ["ActorContext", "ActorRunner", "ActorStartError", "Drainable", "run_parts"]

log = structlog.get_logger("shared.actor")

_READY_POLL_S = 0.01
_LAST_CANCEL_S = 1.0
"""After the grace: how long each further round of cancellation waits."""


@dataclass(frozen=True)
class ActorContext:
    """What every actor gets from `orchestrator up` / `orchestrator run <actor>`: the
    system's settings and Redis, and the event the api sets once it listens."""

    settings: Settings
    redis_url: str
    api_ready: asyncio.Event | None = None
    """Set by the api actor once it listens (the others may wait for it)."""

    def redis(self) -> aioredis.Redis:
        """A new asyncio Redis client for this system (the caller closes it)."""
        client: aioredis.Redis = aioredis.Redis.from_url(self.redis_url)
        return client


ActorRunner = Callable[[ActorContext], Coroutine[Any, Any, None]]
"""`run_actor` of every `services/<actor>/main.py`."""


class ActorStartError(RuntimeError):
    """A part of the actor ended before the actor was ready."""


class Drainable(Protocol):
    """A part that finishes its work in flight when asked to stop: a `Consumer` (stops
    reading, lets its handlers finish, acknowledges them), a server (stops accepting)."""

    def stop(self, *, grace_s: float | None = None) -> None:
        """Take nothing new; `run()` returns once the work in flight is done, at the latest
        after `grace_s`."""
        ...

    async def run(self) -> None:
        """Work until stopped."""
        ...


async def run_parts(
    actor: str,
    *,
    consumers: Sequence[Drainable] = (),
    background: Mapping[str, Callable[[], Awaitable[None]]] | None = None,
    shutdown_grace_s: float,
    ready: asyncio.Event | None = None,
    ready_when: Callable[[], bool] | None = None,
) -> None:
    """Run an actor's parts until cancelled or until one fails (its error is raised after
    the others were shut down); return when every part ended by itself.

    `ready` is set once every part started and `ready_when()` (polled) is true; a part that
    ends before then raises its error, or `ActorStartError`."""
    tasks: dict[asyncio.Task[None], str] = {}
    for index, part in enumerate(consumers):
        label = getattr(part, "streams", None)
        name = f"{actor}:consume:{label[0] if label else index}"
        tasks[asyncio.create_task(part.run(), name=name)] = name
    loops: set[asyncio.Task[None]] = set()
    for label, loop in (background or {}).items():
        task = asyncio.ensure_future(loop())
        task.set_name(f"{actor}:{label}")
        tasks[task] = task.get_name()
        loops.add(task)
    try:
        if ready_when is not None:
            await _until_ready(ready_when, tasks)
        log.info("actor_started", actor=actor, parts=sorted(tasks.values()))
        if ready is not None:
            ready.set()
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("actor_part_failed", actor=actor, part=tasks[task])
                    task.result()  # a part died: the actor stops with its error
    finally:
        await _shut_down(actor, consumers, tasks, loops, shutdown_grace_s)


async def _until_ready(
    ready_when: Callable[[], bool], tasks: Mapping[asyncio.Task[None], str]
) -> None:
    while not ready_when():
        for task in tasks:
            if task.done():
                if not task.cancelled() and task.exception() is not None:
                    task.result()
                raise ActorStartError(f"{tasks[task]} ended before the actor was ready")
        await asyncio.sleep(_READY_POLL_S)


async def _shut_down(
    actor: str,
    consumers: Sequence[Drainable],
    tasks: Mapping[asyncio.Task[None], str],
    loops: set[asyncio.Task[None]],
    grace_s: float,
) -> None:
    """Stop the consumers (they drain up to `grace_s`), cancel the loops, wait; cancel what
    is left after the grace, again every second until everything ended."""
    for part in consumers:
        part.stop(grace_s=grace_s)
    for task in loops:
        task.cancel()
    pending = {task for task in tasks if not task.done()}
    wait_s = grace_s + _LAST_CANCEL_S  # the drain's own deadline, then its last acks
    try:
        while pending:
            _, pending = await asyncio.wait(pending, timeout=wait_s)
            if pending:
                log.warning(
                    "actor_grace_passed", actor=actor, cancelled=sorted(tasks[t] for t in pending)
                )
            for task in pending:  # cancelling again also frees a task whose first
                task.cancel()  # cancellation was swallowed below it
            wait_s = _LAST_CANCEL_S
    except asyncio.CancelledError:  # cancelled again while draining: stop at once
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in tasks:  # retrieve every outcome (no "exception never retrieved")
        failed = task.done() and not task.cancelled() and task.exception() is not None
        if failed and task not in loops:
            log.warning("actor_part_ended_with_error", actor=actor, part=tasks[task])
    log.info("actor_stopped", actor=actor)
