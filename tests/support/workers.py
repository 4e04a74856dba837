"""The worker tests' helpers: settings, a client of the manager's queues, a manager runner."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel

from services.worker_manager.local_runtime import LocalProcessRuntime
from services.worker_manager.main import run_worker_manager
from services.worker_manager.registry import WorkerRecord, WorkerRegistry
from services.worker_manager.settings import WorkerManagerSettings
from shared import registry
from shared.contracts import (
    CreateWorkerCommand,
    DeleteWorkerCommand,
    SendMessageCommand,
    WorkerConfig,
    new_id,
)
from shared.messaging import Bus
from shared.settings import Settings
from tests.workers.helpers import FAKE_CLAUDE, FAKE_DROID


def fast_settings(data_dir: Path, **overrides: Any) -> WorkerManagerSettings:
    """Manager settings for tests: fake CLIs, short intervals, no reaping."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "adapter": "cli",
        "claude_command": FAKE_CLAUDE,
        "droid_command": FAKE_DROID,
        "start_timeout_s": 30.0,
        "stop_grace_s": 2.0,
        "monitor_interval_s": 0.2,
        "liveness_poll_s": 0.1,
        "heartbeat_interval_s": 0.5,
        "idle_timeout_s": 0.0,
        "manager_id": "test-manager",
    }
    values.update(overrides)
    return WorkerManagerSettings(**values)


class Client:
    """Talks to the worker-manager the way langgraph does."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.bus = Bus(redis, actor=registry.Actor.LANGGRAPH)
        self.registry = WorkerRegistry(redis)

    async def call(self, command: BaseModel, timeout_s: float = 60) -> Any:
        """Publish a command and wait for its response."""
        return await self.bus.request(
            "worker:commands", command, reply_stream="worker:responses", timeout_s=timeout_s
        )

    async def create(self, name: str = "dev", agent: str = "claude-code", **kwargs: Any) -> Any:
        """Send a create command."""
        config = WorkerConfig(
            name=name,
            agent=agent,  # type: ignore[arg-type]  # tests pass the literal names
            capabilities=kwargs.pop("capabilities", ["git"]),
            env_vars=kwargs.pop("env_vars", {}),
            mount_session_volume=kwargs.pop("mount_session_volume", False),
        )
        context = kwargs.pop("context", {})
        return await self.call(
            CreateWorkerCommand(request_id=new_id(), config=config, context=context)
        )

    async def send(self, worker_id: str, message: str, timeout_s: int = 30) -> Any:
        """Send a send_message command."""
        command = SendMessageCommand(
            request_id=new_id(), worker_id=worker_id, message=message, timeout=timeout_s
        )
        return await self.call(command, timeout_s=timeout_s + 60)

    async def delete(self, worker_id: str) -> Any:
        """Send a delete command."""
        return await self.call(DeleteWorkerCommand(request_id=new_id(), worker_id=worker_id))

    async def record(self, worker_id: str) -> WorkerRecord:
        """The registry record of a worker."""
        found = await self.registry.get(worker_id)
        assert found is not None
        return found

    async def wait_status(self, worker_id: str, status: str, timeout_s: float = 15) -> None:
        """Wait until the worker's record shows `status`."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while (await self.record(worker_id)).status != status:
            assert asyncio.get_running_loop().time() < deadline, f"never {status}"
            await asyncio.sleep(0.05)


class ManagerRunner:
    """Starts and stops worker-manager runs in the test's event loop."""

    def __init__(self, redis: aioredis.Redis, redis_url: str, tmp_path: Path) -> None:
        self.redis = redis
        self.redis_url = redis_url
        self.data_dir = tmp_path / "workers"
        self.task: asyncio.Task[None] | None = None

    async def start(
        self, *, system: Settings | None = None, **overrides: Any
    ) -> WorkerManagerSettings:
        """Run a manager (one at a time) with fast settings and `overrides`; `system`: the
        system's settings it gets (default: no API credential)."""
        settings = fast_settings(self.data_dir, **overrides)
        self.task = asyncio.create_task(
            run_worker_manager(
                system or Settings(data_dir=self.data_dir.parent),
                self.redis,
                redis_url=self.redis_url,
                manager_settings=settings,
            )
        )
        await asyncio.sleep(0.2)
        assert not self.task.done(), self.task
        return settings

    async def stop(self) -> None:
        """Cancel the running manager (its workers keep running)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def kill_all_workers(self) -> None:
        """Stop every worker process of the test manager."""
        runtime = LocalProcessRuntime(self.data_dir)
        for ref in (await runtime.list_owned("test-manager")).values():
            await runtime.stop(ref, grace_s=0)
