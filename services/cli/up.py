"""`orchestrator up` (every actor, one process) and `orchestrator run <actor>`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import warnings
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console

from services.cli.actors import ACTORS, load_actor
from services.cli.bootstrap import ensure_cli_key, ensure_local_server, with_service_key
from services.cli.console import console_url
from services.settings import SystemSettings
from shared.actor import ActorContext
from shared.embedded import EmbeddedRedis, RuntimeInfo, start_redis, write_runtime
from shared.logs import configure_logging
from shared.observability.context import current_actor
from shared.observability.metrics import MetricsServer, SystemMetrics, serve_metrics
from shared.observability.tracing import TracingConfigError, configure_tracing, shutdown_tracing
from shared.redis_server import RedisServerError
from shared.settings import Settings

console = Console(stderr=True)
API_START_TIMEOUT_S = 60.0
_SECRET_LIKE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|URL")
"""Settings whose bad value is not echoed (it may hold a credential)."""


async def _supervise(ctx: ActorContext, names: list[str], *, bootstrap: bool) -> None:
    """Run the named actors until SIGINT/SIGTERM or until one of them fails.

    The api starts first; the others start once it listens (and, with `bootstrap`, once the
    embedded mode's local admin key and local server exist).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks: dict[asyncio.Task[None], str] = {}

    def start(name: str) -> None:
        tasks[asyncio.create_task(_run_as(name, ctx), name=name)] = name

    try:
        if "api" in names and ctx.api_ready is not None:
            start("api")
            await _wait_ready(ctx.api_ready, tasks)
            if bootstrap:
                await ensure_cli_key(ctx.settings)
                await ensure_local_server(ctx.settings)
            console.print(f"  api    {ctx.settings.api.base_url} [green]ready[/]")
            console.print(
                f"  console {console_url(ctx.settings.api.base_url)}"
                " (sign in: `orchestrator console`)"
            )
        for name in names:
            if name != "api":
                start(name)
        console.print(f"  actors {', '.join(names)}")
        console.print("Press Ctrl-C to stop.")
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    for broken in tasks:
        if broken in done and not broken.cancelled() and broken.exception() is not None:
            raise RuntimeError(f"actor {tasks[broken]} stopped: {broken.exception()!r}")


async def _run_as(name: str, ctx: ActorContext) -> None:
    """Run an actor in a context naming it (its log lines, spans and tasks carry it), with
    `orchestrator_actor_up{actor=name}` at 1 while it runs."""
    current_actor.set(name)
    up_gauge = SystemMetrics.default().actor_up.labels(name)
    up_gauge.set(1)
    try:
        await load_actor(name)(ctx)
    finally:
        up_gauge.set(0)


async def _wait_ready(ready: asyncio.Event, tasks: dict[asyncio.Task[None], str]) -> None:
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait(
        {waiter, *tasks}, timeout=API_START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
    )
    if waiter not in done:
        waiter.cancel()
        for task in done:
            task.result()  # the api failed: its own error
        raise RuntimeError(f"the api did not start within {API_START_TIMEOUT_S:.0f}s")


def _settings(**overrides: object) -> SystemSettings:
    """The settings tree of the environment, with logging set up from them; a deprecated
    variable name is reported with its new name, a bad setting ends the command with an error
    naming it instead of a traceback."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FutureWarning)
        try:
            settings = SystemSettings(**overrides)  # type: ignore[arg-type]
        except ValidationError as failed:
            error: ValidationError | None = failed
        else:
            error = None
    for warning in caught:
        console.print(f"[yellow]deprecated[/] {warning.message}", soft_wrap=True)
    if error is not None:
        for problem in error.errors():
            where = "ORCHESTRATOR_" + "__".join(str(part) for part in problem["loc"]).upper()
            shown = "" if _SECRET_LIKE.search(where) else f"={problem.get('input')!r}"
            console.print(f"[red]bad configuration[/] {where}{shown}: {problem['msg']}")
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _observe(settings: Settings, default_actor: str) -> MetricsServer | None:
    """Start this process's metrics endpoint and, when the `OTEL_*` variables ask for it,
    its trace exporter; a bad value ends the command with an error naming it."""
    try:
        configure_tracing(default_actor)
        server = serve_metrics(settings.metrics)
    except (TracingConfigError, OSError) as error:
        console.print(f"[red]error[/] {error}")
        raise typer.Exit(2) from None
    if server is not None:
        console.print(f"  metrics {server.url}")
    return server


def _start_redis(settings: Settings) -> EmbeddedRedis:
    """The configured Redis or a private one; a private one that cannot start ends the
    command with its reason (e.g. another `up` runs on the same data directory)."""
    try:
        return start_redis(settings)
    except RedisServerError as error:
        console.print(f"[red]error[/] {error}")
        raise typer.Exit(1) from None


def _agent_lines(settings: SystemSettings) -> list[str]:
    """What each agent a worker may ask for runs as (`orchestrator doctor` says more)."""
    from services.cli.doctor import agent_summary

    return agent_summary(settings.workers)


def up(
    data_dir: Path = typer.Option(  # noqa: B008
        None, help="Data directory (default: ./var, or ORCHESTRATOR_DATA_DIR)."
    ),
) -> None:
    """Run every actor in one process on the embedded defaults."""
    base = _settings() if data_dir is None else _settings(data_dir=data_dir)
    redis = _start_redis(base)
    if redis.server is not None and "stop_workers_on_exit" not in base.workers.model_fields_set:
        # the private Redis stops with us and the next run picks another port: workers left
        # running could never be adopted, so the worker-manager deletes them on the way out
        workers = base.workers.model_copy(update={"stop_workers_on_exit": True})
        base = base.model_copy(update={"workers": workers})
    metrics: MetricsServer | None = None
    try:
        settings = with_service_key(base, redis.url)
        console.print(f"[bold]orchestrator up[/]: data in {settings.data_dir.resolve()}")
        metrics = _observe(settings, "orchestrator")
        write_runtime(
            settings,
            RuntimeInfo(
                redis_url=redis.url,
                api_url=settings.api.base_url,
                pid=os.getpid(),
                metrics_url=metrics.url if metrics else "",
            ),
        )
        console.print(f"  redis  {redis.url}" + (" (private)" if redis.server else ""))
        for line in _agent_lines(base):
            console.print(f"  agent  {line}")
        ctx = ActorContext(settings=settings, redis_url=redis.url, api_ready=asyncio.Event())
        asyncio.run(_supervise(ctx, list(ACTORS), bootstrap=True))
    except RuntimeError as error:
        console.print(f"[red]error[/] {error}")
        raise typer.Exit(1) from None
    finally:
        shutdown_tracing()
        if metrics is not None:
            metrics.close()
        redis.stop()
        (base.data_dir / "runtime.json").unlink(missing_ok=True)


def run(actor: str = typer.Argument(..., help=f"The actor to run: {', '.join(ACTORS)}.")) -> None:
    """Run one actor (production: one process per actor, REDIS_URL and DATABASE_URL set)."""
    if actor not in ACTORS:
        raise typer.BadParameter(f"unknown actor {actor!r}; known: {', '.join(ACTORS)}")
    base = _settings()
    redis = _start_redis(base)
    metrics: MetricsServer | None = None
    try:
        metrics = _observe(base, actor)
        settings = base.model_copy(update={"redis_url": redis.url})
        ready = asyncio.Event() if actor == "api" else None
        ctx = ActorContext(settings=settings, redis_url=redis.url, api_ready=ready)
        asyncio.run(_supervise(ctx, [actor], bootstrap=False))
    except RuntimeError as error:
        console.print(f"[red]error[/] {error}")
        raise typer.Exit(1) from None
    finally:
        shutdown_tracing()
        if metrics is not None:
            metrics.close()
        redis.stop()
