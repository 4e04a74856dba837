"""`orchestrator workers`: the registry of workers (status, activity, profile, owner)."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
import typer
from rich.console import Console
from rich.table import Table

__all__ = ["app", "workers_table"]

app = typer.Typer(help="Workers: the worker-manager's registry, read from Redis.")

_HEADERS = ("worker", "status", "agent", "profile", "owner", "task", "activity", "heartbeat")


def _age(now: float, then: float) -> str:
    if not then:
        return "-"
    seconds = max(now - then, 0.0)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


async def workers_table(client: aioredis.Redis, *, now: float | None = None) -> Table:
    """Every worker of the registry as a rich table, oldest first."""
    from services.worker_manager.registry import WorkerRegistry

    now = time.time() if now is None else now
    table = Table(title="Workers")
    for header in (*_HEADERS, "error"):
        table.add_column(header, overflow="fold")
    for record in await WorkerRegistry(client).all():
        agent = (
            record.agent if record.adapter == record.agent else f"{record.agent} → {record.adapter}"
        )
        table.add_row(
            record.worker_id,
            record.status,
            agent,
            record.profile,
            record.owner or "-",
            record.task_id or "-",
            _age(now, record.last_activity_at),
            _age(now, record.heartbeat_at),
            record.error[:200] or "-",
        )
    return table


@app.callback(invoke_without_command=True)
def show(
    ctx: typer.Context,
    redis_url: str = typer.Option(
        None, "--redis-url", help="Redis of the system (default: configured or running one)."
    ),
) -> None:
    """Print the registry of workers."""
    if ctx.invoked_subcommand is not None:
        return
    from shared.embedded import resolve_redis_url
    from shared.settings import Settings

    url = redis_url or resolve_redis_url(Settings())
    if url is None:
        raise typer.BadParameter(
            "no running system found: start `orchestrator up` or pass --redis-url"
        )

    async def fetch() -> Table:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
        try:
            return await workers_table(client)
        finally:
            await client.aclose()

    Console(width=200).print(asyncio.run(fetch()))
