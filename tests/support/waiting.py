"""`eventually`: the one way the tests wait for state that other tasks, actors or processes
change (Redis, the database, a subprocess's output)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar, overload

__all__ = ["background_tasks", "eventually"]

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


@asynccontextmanager
async def background_tasks(
    *, stop_timeout_s: float = 20.0
) -> AsyncIterator[list[asyncio.Task[Any]]]:
    """A list for the tasks a test starts; on the way out (the test failed or not) each is
    cancelled, and an `AssertionError` names those still running after `stop_timeout_s`
    (a stuck shutdown fails the test instead of hanging the suite)."""
    tasks: list[asyncio.Task[Any]] = []
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            done, stuck = await asyncio.wait(tasks, timeout=stop_timeout_s)
            await asyncio.gather(*done, return_exceptions=True)
            assert not stuck, f"tasks did not stop: {stuck}"
