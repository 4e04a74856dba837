"""The agent CLIs' tests' helpers: where the CLIs are, a planted key, a manager that runs them."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.worker_manager.local_runtime import LocalProcessRuntime
from services.worker_manager.settings import WorkerManagerSettings
from tests.support.workers import ManagerRunner

AGENT_BIN = Path(__file__).resolve().parents[2] / "tools" / "agents" / "node_modules" / ".bin"


PLANTED_KEY = "sk-planted-agent-key-7f3a9c"
"""An API key value that must never leave the agent's process environment."""


def cli_path(name: str) -> Path:
    """The pinned CLI `name` (claude, codex, droid), or a skip (a failure under
    REQUIRE_AGENT_CLIS=1) when `make agents` has not installed it."""
    path = AGENT_BIN / name
    if not (path.exists() and os.access(path, os.X_OK)):
        message = f"the real {name!r} CLI is not installed (run `make agents`): {path}"
        if os.environ.get("REQUIRE_AGENT_CLIS") == "1":
            pytest.fail(f"{message} (REQUIRE_AGENT_CLIS=1)")
        pytest.skip(message)
    return path


def agent_env(home: Path, **extra: str) -> dict[str, str]:
    """A minimal agent environment: PATH (git, node), the empty HOME, no git identity."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        **extra,
    }


class OwnManagerRunner(ManagerRunner):
    """A manager runner whose workers carry a manager id of their own: the worker tests of
    other checkouts on the machine clean up `test-manager` workers, and only those."""

    def __init__(self, redis: aioredis.Redis, redis_url: str, tmp_path: Path) -> None:
        super().__init__(redis, redis_url, tmp_path)
        self.manager_id = f"agents-test-{uuid.uuid4().hex[:8]}"

    async def start(self, **overrides: Any) -> WorkerManagerSettings:
        """Run a manager with this runner's id (and fast settings, `overrides`; a `data_dir`
        among them replaces the runner's)."""
        if "data_dir" in overrides:
            self.data_dir = Path(overrides.pop("data_dir"))
        return await super().start(manager_id=self.manager_id, **overrides)

    async def kill_all_workers(self) -> None:
        """Stop every worker process of this runner's manager id."""
        runtime = LocalProcessRuntime(self.data_dir)
        for ref in (await runtime.list_owned(self.manager_id)).values():
            await runtime.stop(ref, grace_s=0)
