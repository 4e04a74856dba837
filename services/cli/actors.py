"""The actors that `orchestrator up` and `orchestrator run <actor>` start.

Every actor's `services/<actor>/main.py` exports the same entry point, `run_actor(ctx:
ActorContext) -> None` (`shared.actor`), which runs the actor until it is cancelled and
then shuts it down gracefully (`shared.actor.run_parts`). Entries are imported lazily, so an
actor's dependencies load only when it runs.
"""

from __future__ import annotations

import importlib

from shared.actor import ActorRunner

__all__ = ["ACTORS", "load_actor"]

ACTORS: dict[str, str] = {
    "api": "services.api.main",
    "worker-manager": "services.worker_manager.main",
    "scaffolder": "services.scaffolder.main",
    "infra-service": "services.infra_service.main",
    "langgraph": "services.langgraph.main",
    "scheduler": "services.scheduler.main",
    "telegram-bot": "services.telegram_bot.main",
}
"""Actor name → the module whose `run_actor` runs it, in start order."""


def load_actor(name: str) -> ActorRunner:
    """The `run_actor` of an actor, imported on demand."""
    try:
        module_name = ACTORS[name]
    except KeyError:
        known = ", ".join(ACTORS)
        raise LookupError(f"unknown actor {name!r} (known: {known})") from None
    runner: ActorRunner = importlib.import_module(module_name).run_actor
    return runner
