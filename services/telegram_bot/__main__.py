"""`python -m services.telegram_bot`: run the bot alone (settings from the environment)."""

from __future__ import annotations

import asyncio
import sys

from services.settings import SystemSettings
from services.telegram_bot.main import run_telegram_bot
from shared.embedded import resolve_redis_url


def main() -> int:
    """Run until interrupted; 2 when no Redis can be found."""
    settings = SystemSettings()
    redis_url = resolve_redis_url(settings)
    if redis_url is None:
        print("no Redis: set REDIS_URL or run `orchestrator up`", file=sys.stderr)  # noqa: T201
        return 2
    asyncio.run(run_telegram_bot(settings, redis_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
