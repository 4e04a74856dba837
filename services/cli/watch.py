"""`orchestrator task watch ID`: follow a task's progress stream until it ends.

A live progress bar with the current step, one line per step as it starts, then the task's
result. The exit code is the task's final state: 0 for completed, 1 for failed or
cancelled, 2 when the task, the API or Redis cannot be found.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import redis.asyncio as aioredis
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from services.cli.projects import call_api
from shared.contracts import ProgressEvent, TaskDTO, TaskStatus
from shared.embedded import resolve_redis_url
from shared.messaging import Bus
from shared.registry import Actor
from shared.settings import Settings

console = Console()
TERMINAL = {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}


def watch(
    task_id: Annotated[str, typer.Argument(help="The task's id.")],
    timeout_s: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 3600,
) -> None:
    """Follow a task's progress live; exit with its final state (non-zero unless completed)."""
    task = call_api(lambda api: api.get_task(task_id))
    if task.status not in TERMINAL:
        redis_url = resolve_redis_url(Settings())
        if redis_url is None:
            console.print("[red]error[/] no Redis: start the system (`make up`) or set REDIS_URL")
            raise typer.Exit(2)
        finished = asyncio.run(_follow(redis_url, task_id, timeout_s))
        if not finished:
            console.print(f"[yellow]still {task.status.value}[/] after {timeout_s:.0f}s")
            raise typer.Exit(2)
        task = call_api(lambda api: api.get_task(task_id))
    _summary(task)
    raise typer.Exit(0 if task.status is TaskStatus.COMPLETED else 1)


async def _follow(redis_url: str, task_id: str, timeout_s: float) -> bool:
    """Show the events until a terminal one; False when the timeout came first."""
    client: aioredis.Redis = aioredis.Redis.from_url(redis_url)
    bus = Bus(client, actor=Actor.TELEGRAM_BOT)
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            row = bar.add_task("queued", total=100)
            # one deadline around the whole stream: a per-event wait_for would start a task per
            # event, and on 3.11 it can swallow the cancellation of Ctrl-C
            async with asyncio.timeout(timeout_s):
                async for event in bus.follow_progress(task_id, from_start=True):
                    _show(bar, row, event)
                    if event.is_terminal:
                        return True
            return True
    except TimeoutError:
        return False
    finally:
        await client.aclose()


_last_step: dict[TaskID, str] = {}


def _show(bar: Progress, row: TaskID, event: ProgressEvent) -> None:
    step = event.current_step or event.type
    if _last_step.get(row) != step:
        _last_step[row] = step
        bar.console.print(f"  [cyan]{step}[/] {event.message or ''}".rstrip())
    completed = 100 if event.type == "completed" else event.progress_pct
    if completed is not None:
        bar.update(row, completed=completed)
    bar.update(row, description=step)
    if event.error:
        bar.console.print(f"  [red]{event.error}[/]")


def _summary(task: TaskDTO) -> None:
    colour = {"completed": "green", "failed": "red"}.get(task.status.value, "yellow")
    console.print(f"task {task.id}: [{colour}]{task.status.value}[/]")
    for key, value in (task.result or {}).items():
        if value not in (None, [], ""):
            console.print(f"  {key}: {value}")
