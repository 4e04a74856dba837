"""Effects that happen once per key (a `request_id` or `task_id`) across redeliveries.

A key moves `absent → running:<token> → done`. `running` is a lease with an expiry, so the
crash of its holder frees it; `done` is kept for `ttl_s`. A second caller that finds the key
`done` skips the effect; one that finds it `running` raises `Retry` (the holder may still
fail, so the message must not be acknowledged yet).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from shared.messaging.errors import Retry
from shared.messaging.keys import idempotency_key
from shared.messaging.transport import Transport

__all__ = ["once", "run_once"]

T = TypeVar("T")
_DONE = "done"


@asynccontextmanager
async def once(
    transport: Transport, key: str, *, ttl_s: float = 7 * 86400, lease_s: float = 900
) -> AsyncIterator[bool]:
    """`async with once(t, request_id) as first:` do the effect only when `first` is True.

    Leaving the block normally records the key as done; leaving it with an exception frees
    the key so a redelivery tries again."""
    redis_key = idempotency_key(key)
    token = f"running:{uuid.uuid4().hex}"
    if not await transport.set_nx(redis_key, token, ttl_ms=int(lease_s * 1000)):
        state = await transport.get(redis_key)
        if state == _DONE:
            yield False
            return
        if state is not None:
            raise Retry(f"effect {key!r} is in progress elsewhere")
        if not await transport.set_nx(redis_key, token, ttl_ms=int(lease_s * 1000)):
            raise Retry(f"effect {key!r} is in progress elsewhere")
    try:
        yield True
    except BaseException:
        await transport.delete_if(redis_key, token)
        raise
    await transport.set(redis_key, _DONE, ttl_ms=int(ttl_s * 1000))


async def run_once(
    transport: Transport, key: str, effect: Callable[[], Awaitable[T]], *, ttl_s: float = 7 * 86400
) -> T | None:
    """Await `effect()` unless it already ran for `key`; returns its value, or None if skipped."""
    async with once(transport, key, ttl_s=ttl_s) as first:
        if first:
            return await effect()
    return None
