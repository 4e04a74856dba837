"""`python -m services.telegram_bot`: run the bot alone (settings from the environment)."""

from __future__ import annotations

import asyncio
import sys

from services.settings import SystemSettings
from services.telegram_bot.main import run_telegram_bot
from shared.embedded import resolve_redis_url
from shared.logs import configure_logging


def setup_logs(settings: SystemSettings) -> None:
    """The system's log setup (plain tracebacks: never a frame's local variables)."""
    configure_logging(settings.log_level, settings.log_format)


def main() -> int:
    """Run until interrupted; 2 when no Redis can be found."""
    settings = SystemSettings()
    setup_logs(settings)
    redis_url = resolve_redis_url(settings)
    if redis_url is None:
        print("no Redis: set REDIS_URL or run `orchestrator up`", file=sys.stderr)  # noqa: T201
        return 2
    asyncio.run(run_telegram_bot(settings, redis_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
