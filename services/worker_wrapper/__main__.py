"""`python -m services.worker_wrapper --worker-id ID --manager-id M [--home DIR]`: run one wrapper.

Settings come from the environment (`WORKER_*`, see `settings.py`); the arguments only name
the process in the process table, so the manager can find its workers after a restart (`--home`:
the manager's data directory, which keeps two systems on one machine apart).
With `WORKER_WARM=1` the wrapper first waits for its task's environment (`warm.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys

import structlog

from services.worker_wrapper.main import run_wrapper
from services.worker_wrapper.settings import WrapperSettings
from services.worker_wrapper.warm import WarmEnv, wait_for_binding
from shared.observability.context import current_actor
from shared.observability.tracing import TracingConfigError, configure_tracing, shutdown_tracing


def main(argv: list[str] | None = None) -> int:
    """Parse the identifying arguments, read settings, serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m services.worker_wrapper")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--manager-id", required=True)
    parser.add_argument("--home", help="the data directory of the manager that started it")
    args = parser.parse_args(argv)
    if os.environ.get("WORKER_WARM") == "1":
        _configure_logs(os.environ.get("WORKER_LOG_LEVEL", "INFO"))
        binding = asyncio.run(wait_for_binding(WarmEnv(dict(os.environ))))
        if binding is None:
            return 0
        os.environ.clear()  # the task's environment replaces the warm one entirely
        os.environ.update(binding)
    settings = WrapperSettings()
    if settings.id != args.worker_id:
        print(f"--worker-id {args.worker_id} does not match WORKER_ID", file=sys.stderr)  # noqa: T201
        return 2
    _configure_logs(settings.log_level)
    current_actor.set("worker")
    try:
        configure_tracing("worker")
    except TracingConfigError as error:
        print(f"bad tracing configuration: {error}", file=sys.stderr)  # noqa: T201
        return 2
    try:
        asyncio.run(run_wrapper(settings))
    finally:
        shutdown_tracing()
    # the manager waits for this process to exit: skip the collector's walk over every
    # imported module's objects at interpreter exit (about 70 ms); exit handlers still run
    gc.freeze()
    return 0


def _configure_logs(level: str) -> None:
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        )
    )


if __name__ == "__main__":
    sys.exit(main())
