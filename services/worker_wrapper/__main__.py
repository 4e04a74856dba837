"""`python -m services.worker_wrapper --worker-id ID --manager-id M [--home DIR]`: run one wrapper.

Settings come from the environment (`WORKER_*`, see `settings.py`); the arguments only name
the process in the process table, so the manager can find its workers after a restart (`--home`:
the manager's data directory, which keeps two systems on one machine apart).
With `WORKER_WARM=1` the wrapper first waits for its task's environment (`warm.py`); with
`WORKER_ADAPTER` in that warm environment it imports that adapter before waiting too.

Run as a program, the wrapper first marks packages it never uses as absent
(`skip_unused_imports`), which keeps a worker's start and its idle size down; its log lines
never render local variables (`configure_worker_logs`).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.worker_wrapper.settings import WrapperSettings
    from services.worker_wrapper.warm import WarmEnv

__all__ = ["UNUSED_IN_WORKERS", "configure_worker_logs", "main", "skip_unused_imports"]

UNUSED_IN_WORKERS = ("rich", "colorama", "better_exceptions", "opentelemetry.sdk.metrics")
"""Packages a worker never uses that its libraries import when present: structlog's pretty
console (rich, colorama; rich's tracebacks printed every frame's local variables, secrets
included) and redis-py's OpenTelemetry metrics hooks (the SDK's metrics, ~80 ms)."""


def skip_unused_imports() -> None:
    """Make `import` of `UNUSED_IN_WORKERS` fail in this process (as if not installed), so
    the libraries that try them take their plain path. For the worker's own process only:
    call it before anything else is imported (a package imported already stays)."""
    for name in UNUSED_IN_WORKERS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    """Parse the identifying arguments, read settings, serve until SIGTERM."""
    import asyncio

    from services.worker_wrapper.main import run_wrapper
    from services.worker_wrapper.warm import WarmEnv
    from shared.observability.tracing import shutdown_tracing

    parser = argparse.ArgumentParser(prog="python -m services.worker_wrapper")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--manager-id", required=True)
    parser.add_argument("--home", help="the data directory of the manager that started it")
    args = parser.parse_args(argv)
    try:
        if os.environ.get("WORKER_WARM") == "1":
            configure_worker_logs(os.environ.get("WORKER_LOG_LEVEL", "INFO"))
            adapter = os.environ.get("WORKER_ADAPTER")
            if adapter:
                from services.worker_wrapper.agents import preload_adapter

                preload_adapter(adapter)
            warm = WarmEnv(dict(os.environ))
            # what was imported stays: keep the collector's passes off it while serving
            gc.collect()
            gc.freeze()
            code = asyncio.run(_warm_then_serve(warm, args.worker_id))
        else:
            settings = _settings(args.worker_id)
            if isinstance(settings, int):
                return settings
            asyncio.run(run_wrapper(settings))
            code = 0
    finally:
        shutdown_tracing()
    # the manager waits for this process to exit: skip the collector's walk over every
    # imported module's objects at interpreter exit (about 70 ms); exit handlers still run
    gc.freeze()
    return code


async def _warm_then_serve(warm: WarmEnv, worker_id: str) -> int:
    """A warm wrapper's life, on one event loop and, when its binding keeps the address,
    one Redis client: ready its input while warm, wait for its binding, then serve."""
    import redis.asyncio as aioredis
    import structlog
    from redis.exceptions import RedisError

    from services.worker_wrapper.main import prepare_input, run_wrapper
    from services.worker_wrapper.warm import redis_client, wait_for_binding

    redis: aioredis.Redis = redis_client(warm.redis_url)
    try:
        groups_ready = False
        try:
            await prepare_input(redis, warm.worker_id)
            groups_ready = True
        except (RedisError, OSError) as exc:  # done again once bound
            structlog.get_logger("services.worker_wrapper").warning(
                "warm_prepare_failed", error=str(exc)
            )
        binding = await wait_for_binding(warm, redis)
        if binding is None:
            return 0
        os.environ.clear()  # the task's environment replaces the warm one entirely
        os.environ.update(binding)
        settings = _settings(worker_id)
        if isinstance(settings, int):
            return settings
        # a new address (its own Redis user's new password) needs a new client
        same = settings.redis_url == warm.redis_url
        await run_wrapper(
            settings, redis=redis if same else None, groups_ready=groups_ready and same
        )
        return 0
    finally:
        await redis.aclose()


def _settings(worker_id: str) -> WrapperSettings | int:
    """The settings from the environment, logs and traces configured; an exit code when
    they do not fit (the error printed)."""
    from services.worker_wrapper.settings import WrapperSettings
    from shared.observability.context import current_actor
    from shared.observability.tracing import TracingConfigError, configure_tracing

    settings = WrapperSettings()
    if settings.id != worker_id:
        print(f"--worker-id {worker_id} does not match WORKER_ID", file=sys.stderr)  # noqa: T201
        return 2
    configure_worker_logs(settings.log_level)
    current_actor.set("worker")
    try:
        configure_tracing("worker")
    except TracingConfigError as error:
        print(f"bad tracing configuration: {error}", file=sys.stderr)  # noqa: T201
        return 2
    return settings


def configure_worker_logs(level: str) -> None:
    """structlog's console lines (on stdout, as before) at `level`, tracebacks as plain
    text: the frames' file, line and code, never their local variables (a wrapper's locals
    hold its task's environment, keys included)."""
    import logging

    import structlog

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(
                colors=sys.stdout.isatty(), exception_formatter=structlog.dev.plain_traceback
            ),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
    )


if __name__ == "__main__":
    skip_unused_imports()
    sys.exit(main())
