"""`python -m services.api`: run the API actor with settings from the environment."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from services.api.main import run_api
from shared.logs import configure_logging
from shared.settings import Settings


def setup_logs(settings: Settings) -> None:
    """The system's log setup (plain tracebacks: never a frame's local variables)."""
    configure_logging(settings.log_level, settings.log_format)


async def _main() -> None:
    settings = Settings()
    setup_logs(settings)
    task = asyncio.create_task(run_api(settings))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


if __name__ == "__main__":
    asyncio.run(_main())
