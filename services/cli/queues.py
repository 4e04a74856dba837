"""`orchestrator queues`: the queue registry, live figures, and dead letters.

- `orchestrator queues [--redis-url URL]`: the registry; with a Redis URL (option,
  `ORCHESTRATOR_REDIS_URL` or `REDIS_URL`) also length, groups, lag, pending, oldest pending
  age and dead letters of every existing stream.
- `orchestrator queues dlq QUEUE`: list the dead letters of a stream.
- `orchestrator queues replay QUEUE [--id ID]...`: move dead letters back onto the stream.
- `orchestrator queues purge QUEUE [--id ID]... --yes`: delete dead letters.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import redis.asyncio as aioredis
import typer
from rich.console import Console
from rich.table import Table

from shared import registry

app = typer.Typer(help="Queues: the registry, with live figures when Redis is reachable.")

T = TypeVar("T")
RedisUrlOption = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        help="Redis to read (default: ORCHESTRATOR_REDIS_URL / REDIS_URL).",
        show_default=False,
    ),
]
IdsOption = Annotated[
    list[str] | None, typer.Option("--id", help="Only this dead-letter id (repeatable).")
]


def registry_table() -> Table:
    """The registry as a rich table: name, message types, writers, consumer, purpose."""
    table = Table(title="Queues", show_lines=False)
    for column in ("queue", "message types", "writer", "consumer", "observers", "purpose"):
        table.add_column(column)
    for spec in registry.QUEUES:
        table.add_row(
            spec.name,
            ", ".join(registry.message_type_name(t) for t in spec.message_types),
            ", ".join(w.value for w in spec.writers),
            spec.consumer.value,
            ", ".join(o.value for o in spec.observers) or "-",
            spec.purpose,
        )
    return table


def _redis_url(option: str | None) -> str | None:
    if option:
        return option
    from shared.embedded import resolve_redis_url
    from shared.settings import Settings

    return resolve_redis_url(Settings())  # configured, else the running `orchestrator up`


def _with_redis(url: str, action: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    """Run `action` with a client on `url`, closing it afterwards."""

    async def run() -> T:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
        try:
            return await action(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


async def live_table(client: aioredis.Redis) -> Table:
    """Live figures of every existing stream of the registry."""
    from shared.messaging.redis_transport import RedisTransport
    from shared.messaging.stats import concrete_streams, queue_stats

    transport = RedisTransport(client)
    table = Table(title="Live")
    columns = ("stream", "length", "groups", "lag", "pending", "oldest pending", "dead letters")
    for column in columns:
        table.add_column(column, justify="left" if column in ("stream", "groups") else "right")
    for spec in registry.QUEUES:
        for stream in await concrete_streams(client, spec):
            stats = await queue_stats(transport, stream)
            groups = ", ".join(f"{g.name}({g.consumers})" for g in stats.groups) or "-"
            table.add_row(
                stream,
                str(stats.length),
                groups,
                "-" if stats.lag is None else str(stats.lag),
                str(stats.pending),
                _age(stats.oldest_pending_age_s),
                str(stats.dead_letters),
            )
    return table


def _check_stream(queue: str) -> str:
    try:
        registry.resolve(queue)
    except registry.UnknownQueueError as exc:
        raise typer.BadParameter(str(exc), param_hint="QUEUE") from None
    return queue


def _need_url(option: str | None) -> str:
    url = _redis_url(option)
    if not url:
        raise typer.BadParameter("no Redis to read: pass --redis-url or set REDIS_URL")
    return url


@app.callback(invoke_without_command=True)
def show(ctx: typer.Context, redis_url: RedisUrlOption = None) -> None:
    """Print the queue registry, and live figures when a Redis URL is known."""
    if ctx.invoked_subcommand is not None:
        return
    console = Console(width=200)
    console.print(registry_table())
    url = _redis_url(redis_url)
    if url:
        try:
            console.print(_with_redis(url, live_table))
        except (OSError, aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            console.print(f"[yellow]no live figures: Redis unreachable ({type(exc).__name__})")


@app.command("dlq")
def dead_letters(
    queue: Annotated[str, typer.Argument(help="A concrete stream, e.g. engineering:queue.")],
    redis_url: RedisUrlOption = None,
    count: Annotated[int, typer.Option(help="How many, oldest first.")] = 100,
) -> None:
    """List the dead letters of a stream: id, reason, attempts, type, error."""
    from shared.messaging.dlq import list_dead_letters
    from shared.messaging.redis_transport import RedisTransport

    stream = _check_stream(queue)
    letters = _with_redis(
        _need_url(redis_url),
        lambda client: list_dead_letters(RedisTransport(client), stream, count=count),
    )
    table = Table(title=f"Dead letters of {stream}: {len(letters)}")
    for column in ("id", "reason", "attempts", "type", "group", "died", "error"):
        table.add_column(column)
    for letter in letters:
        died = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(letter.dead_at_ms / 1000))
        table.add_row(
            letter.dead_id,
            letter.reason,
            str(letter.attempts),
            letter.message_type or "-",
            letter.group,
            died,
            letter.error[:160],
        )
    Console(width=200).print(table)


@app.command("replay")
def replay(
    queue: Annotated[str, typer.Argument(help="A concrete stream, e.g. engineering:queue.")],
    redis_url: RedisUrlOption = None,
    ids: IdsOption = None,
) -> None:
    """Move dead letters (all, or --id ones) back onto their stream, as fresh entries."""
    from shared.messaging.dlq import replay_dead_letters
    from shared.messaging.redis_transport import RedisTransport

    stream = _check_stream(queue)
    replayed = _with_redis(
        _need_url(redis_url),
        lambda client: replay_dead_letters(RedisTransport(client), stream, ids=ids),
    )
    typer.echo(f"replayed {len(replayed)} dead letter(s) onto {stream}")


@app.command("purge")
def purge(
    queue: Annotated[str, typer.Argument(help="A concrete stream, e.g. engineering:queue.")],
    redis_url: RedisUrlOption = None,
    ids: IdsOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete dead letters (all, or --id ones) for good."""
    from shared.messaging.dlq import purge_dead_letters
    from shared.messaging.redis_transport import RedisTransport

    stream = _check_stream(queue)
    what = f"{len(ids)} dead letter(s)" if ids else "every dead letter"
    if not yes and not typer.confirm(f"Delete {what} of {stream}?"):
        raise typer.Abort()
    purged = _with_redis(
        _need_url(redis_url),
        lambda client: purge_dead_letters(RedisTransport(client), stream, ids=ids),
    )
    typer.echo(f"purged {purged} dead letter(s) of {stream}")
