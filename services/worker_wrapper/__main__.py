"""`python -m services.worker_wrapper --worker-id ID --manager-id M`: run one wrapper.

Settings come from the environment (`WORKER_*`, see `settings.py`); the arguments only name
the process in the process table, so the manager can find its workers after a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys

import structlog

from services.worker_wrapper.main import run_wrapper
from services.worker_wrapper.settings import WrapperSettings
from shared.observability.context import current_actor
from shared.observability.tracing import TracingConfigError, configure_tracing, shutdown_tracing


def main(argv: list[str] | None = None) -> int:
    """Parse the identifying arguments, read settings, serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m services.worker_wrapper")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--manager-id", required=True)
    args = parser.parse_args(argv)
    settings = WrapperSettings()
    if settings.id != args.worker_id:
        print(f"--worker-id {args.worker_id} does not match WORKER_ID", file=sys.stderr)  # noqa: T201
        return 2
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
        )
    )
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


if __name__ == "__main__":
    sys.exit(main())
