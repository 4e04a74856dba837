"""A worker-manager killed while it handles a command: another replica takes it over.

The replicas share one consumer group of `worker:commands`; a command in flight at a killed
manager stays pending and is reclaimed by a replica of the same host at once (its consumer's
process is gone). The reclaimed command is handled again from the start, so each step of a
handling must be one that a second handling finds done: the create finds the worker the
first one started (and waits until it takes input), the send finds the prompt published and
the worker's answer in its output stream, even when the first handling had already read it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.worker_manager.api_keys import WorkerApiKeys
from services.worker_manager.local_runtime import LocalProcessRuntime
from services.worker_manager.manager import WorkerManager
from services.worker_manager.registry import as_text
from shared import registry
from shared.contracts import (
    CreateWorkerCommand,
    SendMessageCommand,
    SendMessageResponse,
    WorkerConfig,
    new_id,
)
from shared.messaging import Bus
from tests.support.workers import Client, ManagerRunner, fast_settings
from tests.workers.helpers import FAKE_CLAUDE

ROOT = Path(__file__).resolve().parents[2]
MANAGERS = ("takeover-1", "takeover-2")


async def _payloads(redis: aioredis.Redis, stream: str) -> list[dict[str, Any]]:
    """The payloads of a stream's entries, oldest first."""
    found = []
    for _, fields in await redis.xrange(stream) or []:
        payload = json.loads((fields or {})[b"payload"])
        assert isinstance(payload, dict)
        found.append(payload)
    return found


async def _responses(redis: aioredis.Redis, request_id: str) -> list[dict[str, Any]]:
    """Every response to `request_id` on `worker:responses` so far."""
    stream = registry.get("worker:responses").name
    return [p for p in await _payloads(redis, stream) if p.get("request_id") == request_id]


async def _agent_runs(redis: aioredis.Redis, task_id: str, worker_id: str) -> int:
    """How often the worker's agent started on a prompt of the task."""
    started = f"worker {worker_id} started"
    return sum(
        p.get("message") == started for p in await _payloads(redis, f"task_progress:{task_id}")
    )


async def test_a_send_handled_again_after_its_answer_was_read_answers_at_once(
    manager: ManagerRunner, client: Client
) -> None:
    """The same send_message command handled a second time (its first manager was killed
    after reading the worker's answer, before its acknowledgement) relays the same answer
    at once; the agent runs once. A consumed answer left the second handling waiting for
    the full timeout, and the flow behind it never heard back."""
    await manager.start()
    worker_id = (await client.create(context={"task_id": "t-again"})).worker_id
    command = SendMessageCommand(
        request_id=new_id(), worker_id=worker_id, message="[slow:0.3] hello", timeout=120
    )
    first = await client.call(command, timeout_s=60)
    assert first.success, first.error
    again = await asyncio.wait_for(client.call(command, timeout_s=60), timeout=15)
    assert again.success, again.error
    assert again.response == first.response
    assert await _agent_runs(client.redis, "t-again", worker_id) == 1
    # the next message drops the kept answer; deleting the worker drops the stream
    later = await client.send(worker_id, "next")
    assert later.success, later.error
    output = registry.get("worker:{id}:output").format(id=worker_id)
    kept = [payload["request_id"] for payload in await _payloads(client.redis, output)]
    assert command.request_id not in kept
    assert (await client.delete(worker_id)).success
    assert await client.redis.exists(output) == 0


class Managers:
    """Worker-manager processes (`orchestrator run worker-manager`) of one host."""

    def __init__(self, redis_url: str, tmp_path: Path) -> None:
        self.data_dir = tmp_path / "system"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")},
            "ORCHESTRATOR_DATA_DIR": str(self.data_dir),
            "ORCHESTRATOR_REDIS_URL": redis_url,
            "ORCHESTRATOR_LOG_LEVEL": "INFO",
            "ORCHESTRATOR_WORKERS__ADAPTER": "cli",
            "ORCHESTRATOR_WORKERS__CLAUDE_COMMAND": json.dumps(FAKE_CLAUDE),
            "ORCHESTRATOR_WORKERS__IDLE_TIMEOUT_S": "0",
            "ORCHESTRATOR_WORKERS__START_TIMEOUT_S": "60",
            "ORCHESTRATOR_WORKERS__LIVENESS_POLL_S": "0.1",
            "ORCHESTRATOR_WORKERS__HEARTBEAT_INTERVAL_S": "0.5",
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, manager_id: str) -> None:
        """Start a manager with its own id."""
        log = (self.data_dir.parent / f"{manager_id}.log").open("ab")
        self.processes[manager_id] = subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "run", "worker-manager"],
            cwd=ROOT,
            env={**self.env, "ORCHESTRATOR_WORKERS__MANAGER_ID": manager_id},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill(self, manager_id: str) -> None:
        """SIGKILL a manager: no shutdown of any kind (its workers keep running)."""
        process = self.processes.pop(manager_id)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    async def stop_all(self) -> None:
        """Stop the managers, then every worker they started."""
        for process in self.processes.values():
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        runtime = LocalProcessRuntime(self.data_dir / "workers")
        for manager_id in MANAGERS:
            for ref in (await runtime.list_owned(manager_id)).values():
                await runtime.stop(ref, grace_s=0)


@pytest.fixture
async def managers(
    redis_client: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[Managers]:
    """Manager processes; none of them or their workers is left after the test."""
    running = Managers(redis_url, tmp_path)
    running.data_dir.mkdir()
    try:
        yield running
    finally:
        await running.stop_all()


async def _handler_of(redis: aioredis.Redis, managers: Managers) -> str:
    """The manager whose consumer holds the one pending command."""
    stream = registry.get("worker:commands")
    pending = await redis.xpending_range(stream.name, stream.consumer_group, "-", "+", 10)
    assert len(pending) == 1, pending
    consumer = str(as_text(pending[0]["consumer"]))  # type: ignore[arg-type]
    pid = int(consumer.rpartition("@")[2].split(":")[1])
    return next(m for m, p in managers.processes.items() if p.pid == pid)


async def _until(probe: Any, what: str, timeout_s: float = 60) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not (found := await probe()):
        assert asyncio.get_running_loop().time() < deadline, f"never {what}"
        await asyncio.sleep(0.05)
    return found


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_manager_killed_mid_create_and_mid_send_is_taken_over(
    managers: Managers, client: Client
) -> None:
    """Kill the manager handling a create (its worker started, not yet answered): the other
    replica answers it with that same worker. Kill the manager relaying a message (the agent
    busy): the other relays the answer. Each request answered, each agent run once, one
    worker for the task."""
    redis = client.redis
    managers.start(MANAGERS[0])
    create = CreateWorkerCommand(
        request_id=new_id(),
        config=WorkerConfig(name="dev", agent="claude-code", capabilities=["git"], env_vars={}),
        context={"task_id": "t-takeover"},
    )
    await client.bus.publish("worker:commands", create)

    async def created() -> Any:
        return await client.registry.find_by_request(create.request_id)

    first = await _until(created, "a worker record for the create")
    managers.kill(MANAGERS[0])  # before the worker takes input: the create is unanswered
    assert await _responses(redis, create.request_id) == []
    managers.start(MANAGERS[1])
    answer = await client.bus.wait_reply("worker:responses", create.request_id, timeout_s=90)
    assert answer.success, answer.error  # type: ignore[attr-defined]
    assert answer.worker_id == first.worker_id  # type: ignore[attr-defined]
    workers = [
        r.worker_id for r in await client.registry.all() if r.task_id == "t-takeover" and r.is_live
    ]
    assert workers == [first.worker_id]
    worker_id = first.worker_id

    managers.start(MANAGERS[0])  # back under its id, as a restart policy brings it
    send = SendMessageCommand(
        request_id=new_id(), worker_id=worker_id, message="[slow:3] the spec", timeout=120
    )
    await client.bus.publish("worker:commands", send)
    await client.wait_status(worker_id, "busy", timeout_s=60)
    managers.kill(await _handler_of(redis, managers))  # the one relaying it
    reply = await client.bus.wait_reply("worker:responses", send.request_id, timeout_s=90)
    assert isinstance(reply, SendMessageResponse)
    assert reply.success, reply.error
    assert "the spec" in (reply.response or "")
    await asyncio.sleep(1)  # a second relay, if any, has had its time
    assert len(await _responses(redis, send.request_id)) <= 1  # read once, consumed by us
    assert await _agent_runs(redis, "t-takeover", worker_id) == 1
    assert (await client.record(worker_id)).status == "running"


class SlowToFinish(LocalProcessRuntime):
    """A runtime whose stop returns a while after the process ended (a loaded host)."""

    async def stop(self, ref: str, *, grace_s: float) -> None:
        await super().stop(ref, grace_s=grace_s)
        await asyncio.sleep(1.5)


async def test_a_delete_by_another_replica_is_not_taken_for_a_death(
    manager: ManagerRunner, client: Client, redis_client: aioredis.Redis, redis_url: str
) -> None:
    """Any replica takes a delete command. While another one stops the worker, the owner's
    monitor sees its process gone and a record still live: that is no death (the worker
    ends `stopped`, its task hears of no failure)."""
    settings = await manager.start()
    worker_id = (await client.create(context={"task_id": "t-delete"})).worker_id
    other_settings = fast_settings(manager.data_dir, manager_id="another-replica")
    other = WorkerManager(
        settings=other_settings.model_copy(update={"data_dir": settings.data_dir.resolve()}),
        bus=Bus(redis_client, actor=registry.Actor.WORKER_MANAGER),
        redis=redis_client,
        runtime=SlowToFinish(settings.data_dir.resolve()),
        redis_url=redis_url,
        api_keys=WorkerApiKeys(redis_client, None),
    )
    await other.delete(worker_id, reason="delete command")
    record = await client.record(worker_id)
    assert record.status == "stopped", (record.status, record.error)
    progress = await _payloads(redis_client, "task_progress:t-delete")
    assert f"worker {worker_id} failed" not in [p.get("message") for p in progress]
