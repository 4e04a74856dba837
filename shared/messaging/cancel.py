"""Cancellation that survives the Redis client.

redis-py (asyncio) can swallow a task's `CancelledError` while a command is on the wire: the
command completes, or fails as a connection error, and the task never sees its cancellation.
A loop that retries connection errors would then run forever. Every loop of the runtime
calls `raise_if_cancelling()` at the top of each turn and before treating an error as
retryable: a task that has been asked to cancel (`Task.cancelling()`) stops there.

`asyncio.wait_for` on Python 3.11 swallows a cancellation too: cancelled in the instant the
awaited thing completes, it returns that result, and a loop that waits for a wake-up event
with a timeout goes on forever. Loops wait with `wait_event`, built on `asyncio.timeout`,
which hands the cancellation on.
"""

from __future__ import annotations

import asyncio

__all__ = ["raise_if_cancelling", "wait_event"]


def raise_if_cancelling() -> None:
    """Raise `CancelledError` when the current task has a pending cancellation request."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until `event` is set, at most `timeout_s`; True when it is set. A cancellation of
    the waiting task is always raised, even in the instant the event is set."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
