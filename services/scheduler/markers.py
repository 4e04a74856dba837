"""Markers that keep a job from repeating an action (a provisioning trigger, a delete command)
before its retry time: checked before the action, set only after it succeeded."""

from __future__ import annotations

import redis.asyncio as aioredis

from services.scheduler import keys

__all__ = ["is_marked", "mark"]


async def is_marked(redis: aioredis.Redis, action: str, subject: str) -> bool:
    """True while `action` for `subject` is marked done."""
    return bool(await redis.exists(keys.marker_key(action, subject)))


async def mark(redis: aioredis.Redis, action: str, subject: str, *, ttl_s: float) -> None:
    """Mark `action` for `subject` done for `ttl_s` seconds."""
    await redis.set(keys.marker_key(action, subject), "1", px=max(int(ttl_s * 1000), 1))
