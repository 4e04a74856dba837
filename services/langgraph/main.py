"""Run the langgraph actor: build its dependencies, consume its four streams, sweep.

For the integrator: `await run_actor(ctx)` (`shared.actor.ActorContext`) runs the actor until
it is cancelled (`orchestrator up` / `orchestrator run langgraph`); `python -m services.langgraph`
runs it from the environment. Tests call `serve(...)` with fakes for outside systems.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog

from services.langgraph.api import ApiAdapter
from services.langgraph.checkpointer import open_checkpointer
from services.langgraph.graphs.deploy import build_deploy_graph
from services.langgraph.graphs.engineering import build_engineering_graph
from services.langgraph.handlers import Handlers
from services.langgraph.health import HttpHealthCheck
from services.langgraph.naming import results_stream
from services.langgraph.ports import ApiPort, FlowDeps, GitPort, HealthPort
from services.langgraph.runner import FlowRunner
from services.langgraph.settings import LanggraphSettings
from services.langgraph.store import FlowStore
from services.langgraph.sweeper import Sweeper
from services.langgraph.workers import RegistryWorkers
from shared import registry
from shared.actor import ActorContext, run_parts
from shared.api_client import ApiClient
from shared.git import build_provider
from shared.messaging import Bus, Consumer, Handler
from shared.registry import Actor

__all__ = ["Actor", "LanggraphActor", "main", "open_actor", "run_actor", "serve"]

log = structlog.get_logger("services.langgraph")


@dataclass
class LanggraphActor:
    """A wired actor: its runner, handlers, consumers and sweeper."""

    runner: FlowRunner
    handlers: Handlers
    consumers: list[Consumer]
    sweeper: Sweeper

    async def run(self, *, shutdown_grace_s: float = 5.0) -> None:
        """Consume and sweep until cancelled, then shut down (`shared.actor.run_parts`):
        consumers stop reading and get `shutdown_grace_s` to finish their handlers; whatever
        is left is cancelled (flows are checkpointed, their messages redelivered)."""
        await run_parts(
            Actor.LANGGRAPH.value,
            consumers=self.consumers,
            background={"sweeper": self.sweeper.run},
            shutdown_grace_s=shutdown_grace_s,
        )


def _consumers(bus: Bus, handlers: Handlers, settings: LanggraphSettings) -> list[Consumer]:
    routes: list[tuple[str, Handler]] = [
        (registry.get("engineering:queue").name, handlers.handle_engineering_message),
        (registry.get("deploy:queue").name, handlers.handle_deploy_message),
        (registry.get("worker:responses").name, handlers.handle_worker_response),
        (results_stream(), handlers.handle_result),
    ]
    return [
        bus.consumer(
            stream,
            handler,
            concurrency=settings.concurrency,
            max_attempts=settings.max_attempts,
            reclaim_idle_ms=settings.reclaim_idle_ms,
        )
        for stream, handler in routes
    ]


@contextlib.asynccontextmanager
async def open_actor(
    settings: LanggraphSettings,
    redis: aioredis.Redis,
    *,
    api: ApiPort | None = None,
    git: GitPort | None = None,
    health: HealthPort | None = None,
) -> AsyncIterator[LanggraphActor]:
    """The actor wired on its checkpointer and Redis; real adapters unless given."""
    bus = Bus(redis, actor=Actor.LANGGRAPH)
    async with contextlib.AsyncExitStack() as stack:
        checkpointer = await stack.enter_async_context(open_checkpointer(settings))
        if api is None:
            key = settings.api_key.get_secret_value() if settings.api_key else None
            client = ApiClient(settings.api_url, key=key, timeout_s=settings.timeouts.api_s)
            stack.push_async_callback(client.aclose)
            api = ApiAdapter(client)
        deps = FlowDeps(
            bus=bus,
            api=api,
            git=git or build_provider(settings.git, data_dir=settings.data_dir),
            health=health or HttpHealthCheck(),
            store=FlowStore(redis, lock_ttl_ms=settings.lock_ttl_ms),
            settings=settings,
            workers=RegistryWorkers(redis),
        )
        graphs = {
            "engineering": build_engineering_graph(checkpointer),
            "deploy": build_deploy_graph(checkpointer),
        }
        runner = FlowRunner(graphs, deps)  # type: ignore[arg-type]  # dict literal of two kinds
        handlers = Handlers(runner)
        yield LanggraphActor(runner, handlers, _consumers(bus, handlers, settings), Sweeper(runner))


async def serve(settings: LanggraphSettings, redis_url: str) -> None:
    """Run the actor with its real adapters until cancelled."""
    redis: aioredis.Redis = aioredis.Redis.from_url(redis_url)
    try:
        async with open_actor(settings, redis) as actor:
            log.info("langgraph_started", checkpointer=settings.checkpoint_url or "sqlite")
            await actor.run(shutdown_grace_s=settings.shutdown_grace_s)
    finally:
        await redis.aclose()


async def run_actor(ctx: ActorContext) -> None:
    """The `langgraph` actor (`orchestrator up` / `orchestrator run langgraph`): its
    section of the system's settings (`shutdown_grace_s` of the section, if set there)."""
    await serve(LanggraphSettings.of(ctx.settings), ctx.redis_url)


def main() -> None:
    """`python -m services.langgraph`: settings and Redis from the environment."""
    from services.settings import SystemSettings  # the tree: every section, this one too

    settings = SystemSettings()
    if not settings.redis_url:
        raise SystemExit("set REDIS_URL (or ORCHESTRATOR_REDIS_URL) to run langgraph alone")
    asyncio.run(run_actor(ActorContext(settings, settings.redis_url)))
