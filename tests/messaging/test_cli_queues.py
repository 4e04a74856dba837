"""`orchestrator queues` with live figures, and `queues dlq|replay|purge`, run as a user would."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from shared import registry
from shared.messaging import Bus
from shared.messaging.envelope import as_str
from tests.support.messaging import engineering

ROOT = Path(__file__).resolve().parents[2]
ORCHESTRATOR = Path(sys.executable).parent / "orchestrator"
ENGINEERING = registry.get("engineering:queue").name


async def run(*args: str) -> tuple[int, str]:
    """Run the installed console script; returns its exit code and output."""
    process = await asyncio.create_subprocess_exec(
        str(ORCHESTRATOR),
        *args,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "250"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode()


async def test_queues_shows_live_figures_per_stream(
    bus: Bus, redis_client: aioredis.Redis, redis_url: str
) -> None:
    """Length, groups, lag, pending and dead letters appear for existing streams and workers."""
    await redis_client.xgroup_create(ENGINEERING, "langgraph", id="0", mkstream=True)
    await bus.publish_many([(ENGINEERING, engineering(f"t-{i}")) for i in range(4)])
    await redis_client.xreadgroup("langgraph", "c1", {ENGINEERING: ">"}, count=1)
    await redis_client.xadd(registry.dead_letter_stream(ENGINEERING), {"payload": "x"})
    worker_input = registry.get("worker:{id}:input").format(id="42")
    await redis_client.xadd(worker_input, {"payload": "{}"})
    code, out = await run("queues", "--redis-url", redis_url)
    assert code == 0, out
    row = next(
        line
        for line in out.splitlines()
        if line.startswith("│ engineering:queue") and "langgraph(1)" in line
    )
    cells = [cell.strip() for cell in row.strip("│").split("│")]
    info: Any = await redis_client.info("server")
    lag = "3" if int(str(info["redis_version"]).split(".")[0]) >= 7 else "-"  # 6.2: unknown
    assert cells[:5] == ["engineering:queue", "4", "langgraph(1)", lag, "1"]
    assert cells[6] == "1"
    assert "worker:42:input" in out


async def test_dlq_replay_and_purge_commands(
    bus: Bus, redis_client: aioredis.Redis, redis_url: str
) -> None:
    """dlq lists with the reason, replay moves one back, purge deletes the rest."""
    dead = registry.dead_letter_stream(ENGINEERING)
    first = await redis_client.xadd(
        dead, {"payload": "{}", "dlq_reason": "invalid", "dlq_error": "task_id: Field required"}
    )
    await redis_client.xadd(dead, {"payload": "{}", "dlq_reason": "exhausted", "dlq_error": "x"})
    code, out = await run("queues", "dlq", ENGINEERING, "--redis-url", redis_url)
    assert code == 0, out
    assert "Dead letters of engineering:queue: 2" in out
    assert "task_id: Field required" in out
    code, out = await run(
        "queues", "replay", ENGINEERING, "--id", as_str(first), "--redis-url", redis_url
    )
    assert (code, out.strip()) == (0, "replayed 1 dead letter(s) onto engineering:queue")
    assert await redis_client.xlen(ENGINEERING) == 1
    code, out = await run("queues", "purge", ENGINEERING, "--yes", "--redis-url", redis_url)
    assert (code, out.strip()) == (0, "purged 1 dead letter(s) of engineering:queue")
    assert await redis_client.xlen(dead) == 0
    code, out = await run("queues", "dlq", "no:such:queue", "--redis-url", redis_url)
    assert code == 2
    assert "matches no queue" in out
