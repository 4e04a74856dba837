"""Twenty workers at once: created, answering and deleted concurrently."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.workers import Client, ManagerRunner
from tests.workers.helpers import processes_with

WORKERS = 20


@pytest.mark.slow
async def test_twenty_workers_at_once(manager: ManagerRunner, client: Client) -> None:
    """20 creates, 20 messages and 20 deletes in parallel all succeed; nothing is left."""
    await manager.start(adapter="builtin", start_timeout_s=90.0)
    created = await asyncio.gather(*(client.create(name=f"w{i}") for i in range(WORKERS)))
    assert [c.error for c in created if not c.success] == []
    ids = [c.worker_id for c in created]
    assert len(set(ids)) == WORKERS
    answers = await asyncio.gather(*(client.send(i, f"task for {i}") for i in ids))
    assert [a.error for a in answers if not a.success] == []
    assert all("built-in deterministic agent" in a.response for a in answers)
    deleted = await asyncio.gather(*(client.delete(i) for i in ids))
    assert all(d.success for d in deleted)
    assert {(await client.record(i)).status for i in ids} == {"stopped"}
    # this manager's wrappers only (another run's share the manager id, not the home)
    assert processes_with(f"--home {manager.data_dir.resolve()}") == []
