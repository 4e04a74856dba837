"""tests/support: `eventually` waits for plain and async conditions and names what failed."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.waiting import background_tasks, eventually


async def test_eventually_returns_once_a_plain_or_async_condition_holds() -> None:
    seen: list[int] = []

    async def later() -> None:
        await asyncio.sleep(0.05)
        seen.append(1)

    task = asyncio.create_task(later())
    await eventually(lambda: seen == [1], timeout_s=2)

    async def async_condition() -> bool:
        return len(seen) == 1

    await eventually(async_condition, timeout_s=2)
    await task


async def test_eventually_times_out_naming_the_condition() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError, match="the answer"):
        await eventually(lambda: False, timeout_s=0.2, what="the answer")
    assert 0.2 <= loop.time() - started < 2
    never: list[int] = []
    with pytest.raises(TimeoutError, match="lambda: never == \\[1\\]"):
        await eventually(lambda: never == [1], timeout_s=0.1)


@pytest.mark.parametrize(("timeout_s", "interval_s"), [(0, 0.1), (1, 0), (-1, 0.1)])
async def test_eventually_refuses_bad_timings(timeout_s: float, interval_s: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        await eventually(lambda: True, timeout_s=timeout_s, interval_s=interval_s)


async def test_eventually_answers_the_first_truthy_value() -> None:
    answers = iter([None, [], ["found"]])
    assert await eventually(lambda: next(answers), timeout_s=2, interval_s=0.01) == ["found"]

    async def count() -> int:
        return 3

    three: int = await eventually(count, timeout_s=2)
    assert three == 3


async def test_background_tasks_are_cancelled_and_a_stuck_one_is_named() -> None:
    async with background_tasks() as tasks:
        tasks.append(asyncio.create_task(asyncio.sleep(60)))
    assert tasks[0].cancelled()

    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue

    started: list[asyncio.Task[None]] = []

    async def start_one() -> None:
        async with background_tasks(stop_timeout_s=0.2) as tasks:
            started.append(asyncio.create_task(stubborn()))
            tasks.extend(started)
            await asyncio.sleep(0.01)  # started: the cancel reaches its `except`

    with pytest.raises(AssertionError, match="tasks did not stop"):
        await start_one()
    release.set()
    await started[0]
