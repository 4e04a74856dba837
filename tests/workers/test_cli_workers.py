"""`orchestrator workers`: the registry as a table."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from services.cli.main import app
from services.worker_manager.registry import WorkerRecord, WorkerRegistry


def test_workers_table_lists_the_registry(redis_url: str) -> None:
    """Every worker appears with status, agent → adapter, profile, owner and error."""

    async def fill() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await client.flushdb()
        registry = WorkerRegistry(client)
        now = time.time()
        await registry.put(
            WorkerRecord(
                worker_id="dev-1",
                name="dev",
                adapter="builtin",
                status="busy",
                owner="user-7",
                task_id="t-9",
                created_at=now - 30,
                last_activity_at=now - 5,
                heartbeat_at=now - 1,
                agent="claude-code",
                runtime="local",
                manager_id="m",
            )
        )
        await registry.put(
            WorkerRecord(
                worker_id="po-2",
                name="po",
                adapter="claude-code",
                profile="po",
                agent="claude-code",
                runtime="local",
                manager_id="m",
            )
        )
        await registry.finish("po-2", "failed", error="worker process 42 ended (exit code 1)")
        await client.aclose()

    asyncio.run(fill())
    result = CliRunner().invoke(app, ["workers", "--redis-url", redis_url])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    dev = next(line for line in lines if "dev-1" in line)
    assert "busy" in dev
    assert "claude-code → builtin" in dev
    assert "user-7" in dev
    assert "t-9" in dev
    po = next(line for line in lines if "po-2" in line)
    assert "failed" in po
    assert "exit code 1" in result.output


def test_workers_without_a_system_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no Redis configured or running, the command explains how to get one."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_REDIS_URL", raising=False)
    monkeypatch.setenv("ORCHESTRATOR_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["workers"])
    assert result.exit_code != 0
    assert "orchestrator up" in result.output
