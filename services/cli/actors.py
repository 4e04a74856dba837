"""The actors that `orchestrator up` and `orchestrator run <actor>` start.

Each entry names a coroutine function `run(ctx: ActorContext) -> None` that runs the actor
until it is cancelled. Entries are imported lazily, so an actor's dependencies load only
when it runs. Actors take the context structurally (`settings`, `redis_url`, `redis()`).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass

import redis.asyncio as aioredis

from shared.settings import Settings

__all__ = ["ACTORS", "ActorContext", "ActorRunner", "load_actor"]


@dataclass(frozen=True)
class ActorContext:
    """What every actor gets: the settings and the Redis URL of the system."""

    settings: Settings
    redis_url: str
    api_ready: asyncio.Event | None = None
    """Set by the api actor once it listens (the others may wait for it)."""

    def redis(self) -> aioredis.Redis:
        """A new asyncio Redis client for this system (the caller closes it)."""
        client: aioredis.Redis = aioredis.Redis.from_url(self.redis_url)
        return client


ActorRunner = Callable[[ActorContext], Coroutine[None, None, None]]


async def run_api(ctx: ActorContext) -> None:
    """The `api` actor: REST API and outbox relay."""
    from services.api.main import run_api as serve

    await serve(ctx.settings, ready=ctx.api_ready)


async def run_langgraph(ctx: ActorContext) -> None:
    """The `langgraph` actor: engineering and deploy graphs."""
    from services.langgraph.main import run_langgraph as serve

    await serve(ctx.settings, ctx.redis_url)


async def run_scheduler(ctx: ActorContext) -> None:
    """The `scheduler` actor: periodic jobs, once per tick across replicas."""
    from services.scheduler.main import run_scheduler as serve

    await serve(ctx.settings, ctx.redis_url)


ACTORS: dict[str, str] = {
    "api": "services.cli.actors:run_api",
    "worker-manager": "services.worker_manager.main:run_actor",
    "scaffolder": "services.scaffolder.main:run_actor",
    "infra-service": "services.infra_service.main:run_actor",
    "langgraph": "services.cli.actors:run_langgraph",
    "scheduler": "services.cli.actors:run_scheduler",
    "telegram-bot": "services.telegram_bot.main:run_actor",
}
"""Actor name → `module:function` of its runner, in start order."""


def load_actor(name: str) -> ActorRunner:
    """The runner of an actor, imported on demand."""
    try:
        target = ACTORS[name]
    except KeyError:
        known = ", ".join(ACTORS)
        raise LookupError(f"unknown actor {name!r} (known: {known})") from None
    module_name, _, function = target.partition(":")
    runner: ActorRunner = getattr(importlib.import_module(module_name), function)
    return runner
