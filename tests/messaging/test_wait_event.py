"""`wait_event`: a loop that waits for a wake-up with a timeout stops when cancelled, even in
the instant it is woken. With `asyncio.wait_for` (Python 3.11) the cases 0 to 2 below went on
forever: the telegram bot's task notifier did so in a CI run and outlived its shutdown."""

from __future__ import annotations

import asyncio

import pytest

from shared.messaging.cancel import wait_event


@pytest.mark.parametrize("steps", range(6))
async def test_a_cancellation_as_the_event_is_set_stops_the_loop(steps: int) -> None:
    """The event is set, the loop's task is cancelled `steps` loop turns later: it stops."""
    event = asyncio.Event()
    turns = 0

    async def loop() -> None:
        nonlocal turns
        while True:
            await wait_event(event, 30)
            event.clear()
            turns += 1

    task = asyncio.create_task(loop())
    for _ in range(3):
        await asyncio.sleep(0)
    event.set()
    for _ in range(steps):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert task in done, f"the loop went on after its cancellation ({turns} turns)"
    assert task.cancelled()


async def test_the_timeout_and_the_event_are_told_apart() -> None:
    """False after the timeout with the event clear; True at once when it is set."""
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 30) is True
