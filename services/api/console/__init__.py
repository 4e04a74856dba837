"""The web console served by the API at `/console/` (`docs/console.md`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from fastapi.staticfiles import StaticFiles

from shared.git.provider import GitProvider
from shared.settings import ConsoleSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["close_console", "install_console"]


def install_console(
    app: FastAPI,
    settings: ConsoleSettings | None = None,
    redis_url: str | None = None,
    api_url: str | None = None,
    *,
    git: GitProvider | None = None,
    git_owner: str = "projects",
    git_branch: str = "main",
) -> None:
    """Serve the console's pages and assets on `app`; `redis_url` gives it live data and its
    chat, whose PO workers reach the API at `api_url`; `git` reads the projects' repositories
    (under `git_owner`) for their commits (of `git_branch`) and diffs."""
    from pathlib import Path

    from services.api.console.router import router

    app.state.console_settings = settings or ConsoleSettings()
    app.state.console_redis = (
        aioredis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=10)
        if redis_url
        else None
    )
    app.state.console_api_url = api_url
    app.state.console_git = git
    app.state.console_git_owner = git_owner
    app.state.console_git_branch = git_branch
    app.state.app_probe = getattr(app.state, "app_probe", None)  # main() sets the live one
    app.state.console_chat = None  # started with the first chat message
    static = Path(__file__).resolve().parent / "static"
    app.mount("/console/static", StaticFiles(directory=static), name="console-static")
    app.include_router(router)


async def close_console(app: FastAPI) -> None:
    """Close the console's Redis client."""
    git = getattr(app.state, "console_git", None)
    closer = getattr(git, "aclose", None)
    if closer is not None:
        await closer()
    chat = getattr(app.state, "console_chat", None)
    if chat is not None:
        await chat.close()
    client: aioredis.Redis | None = getattr(app.state, "console_redis", None)
    if client is not None:
        await client.aclose()
