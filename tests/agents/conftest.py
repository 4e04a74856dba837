"""Fixtures of the real-CLI tests: the pinned CLIs of tools/agents, scripted model APIs.

The CLIs come from `make agents` (run by `make test`). Without them the tests skip, unless
`REQUIRE_AGENT_CLIS=1` (CI), which makes a missing CLI a failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.support.agents import OwnManagerRunner, agent_env, cli_path
from tests.workers.conftest import client

__all__ = ["client"]  # the worker tests' client fixture, for the tests run by workers


@pytest.fixture
def claude_cli() -> Path:
    """The real `claude`."""
    return cli_path("claude")


@pytest.fixture
def codex_cli() -> Path:
    """The real `codex`."""
    return cli_path("codex")


@pytest.fixture
def droid_cli() -> Path:
    """The real `droid`."""
    return cli_path("droid")


@pytest.fixture
def empty_home(tmp_path: Path) -> Path:
    """A HOME with nothing in it: no ~/.gitconfig, no CLI state or login."""
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def make_env(empty_home: Path) -> Callable[..., dict[str, str]]:
    """Build an agent environment on the empty HOME."""

    def build(**extra: str) -> dict[str, str]:
        return agent_env(empty_home, **extra)

    return build


@pytest.fixture
async def manager(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[OwnManagerRunner]:
    """A manager runner; every worker is gone after the test."""
    runner = OwnManagerRunner(redis_client, redis_url, tmp_path)
    try:
        yield runner
    finally:
        await runner.stop()
        await runner.kill_all_workers()
