"""What every actor's `run_actor(ctx)` receives from `orchestrator up` / `orchestrator run`.

A Protocol, so services depend on `shared` only; `services/cli/actors.py` builds the real one.
"""

from __future__ import annotations

from typing import Protocol

import redis.asyncio as aioredis

from shared.settings import Settings

__all__ = ["ActorContext"]


class ActorContext(Protocol):
    """The system's settings and Redis, as handed to an actor."""

    @property
    def settings(self) -> Settings:
        """The system's settings."""
        ...

    @property
    def redis_url(self) -> str:
        """URL of the system's Redis."""
        ...

    def redis(self) -> aioredis.Redis:
        """A new Redis client (the caller closes it)."""
        ...
