"""`eventually`: the one way the tests wait for state that other tasks, actors or processes
change (Redis, the database, a subprocess's output)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

__all__ = ["eventually"]

T = TypeVar("T")


@overload
async def eventually(
    condition: Callable[[], Awaitable[T]],
    *,
    timeout_s: float = ...,
    interval_s: float = ...,
    what: str | None = ...,
) -> T: ...


@overload
async def eventually(
    condition: Callable[[], T],
    *,
    timeout_s: float = ...,
    interval_s: float = ...,
    what: str | None = ...,
) -> T: ...


async def eventually(
    condition: Callable[[], object],
    *,
    timeout_s: float = 20.0,
    interval_s: float = 0.05,
    what: str | None = None,
) -> object:
    """Poll `condition` (a plain or an async callable) until it answers something truthy,
    and answer that; `TimeoutError` naming `what` (else the condition's source) after
    `timeout_s`. The condition is asked at least once, and once more at the deadline."""
    if timeout_s <= 0 or interval_s <= 0:
        raise ValueError(f"timeout_s and interval_s must be positive ({timeout_s}, {interval_s})")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            raise TimeoutError(f"not true within {timeout_s:g}s: {what or _describe(condition)}")
        await asyncio.sleep(min(interval_s, max(0.0, deadline - loop.time())))


def _describe(condition: Callable[[], object]) -> str:
    try:
        return inspect.getsource(condition).strip()[:200]
    except (OSError, TypeError):
        return repr(condition)
