"""Small fake actors for the chat tests, on the real queues of a real Redis.

- `FakeWorkerManager`: answers `CreateWorkerCommand`s on `worker:commands`, writes the worker
  registry record the core reads, and runs each PO worker as an in-process consumer of
  `worker:{id}:input` that answers with the real built-in PO agent (`BuiltinPoAgent`),
  configured by the env_vars of the create command plus, like the real worker-manager, the
  user-scoped API key its context asks for (minted with the service key; revoked when the
  worker dies or is deleted).
- `FakeLanggraph`: consumes `engineering:queue` / `deploy:queue` (written by the API's outbox),
  moves the task through the API, publishes progress, and for a deploy serves a real URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis
from aiohttp import web

from services.worker_wrapper.agents import AgentRequest, BuiltinAgent
from services.worker_wrapper.agents.base import ignore_activity
from services.worker_wrapper.agents.builtin_po import BuiltinPoAgent
from shared import registry
from shared.api_client import ApiClient
from shared.api_client.schemas import ApiKeyCreate, TaskUpdate
from shared.chat.keys import worker_record_key
from shared.chat.po_profile import API_KEY_ENV_CONTEXT, OWNER_CONTEXT
from shared.contracts import (
    CreateWorkerCommand,
    CreateWorkerResponse,
    DeleteWorkerCommand,
    DeleteWorkerResponse,
    DeployMessage,
    EngineeringMessage,
    ProgressEvent,
    TaskStatus,
    WorkerInputMessage,
    WorkerOutputMessage,
)
from shared.messaging import Bus, Consumer, MessageContext


@dataclass
class FakeWorker:
    """One PO worker: its env (from the create command) and its input consumer."""

    worker_id: str
    env: dict[str, str]
    workspace: Path
    consumer: Consumer
    task: asyncio.Task[None]
    key_id: int | None = None
    prompts: list[str] = field(default_factory=list)
    dead: bool = False


class FakeWorkerManager:
    """Creates PO workers that answer with the real built-in PO agent."""

    def __init__(
        self, redis: aioredis.Redis, workdir: Path, api: ApiClient, *, fail_create: bool = False
    ) -> None:
        self.redis = redis
        self.api = api
        """The service credential that mints and revokes the workers' keys."""
        self.workdir = workdir
        self.fail_create = fail_create
        self.answering = asyncio.Event()
        """Workers answer only while this is set; cleared, they hold every prompt."""
        self.answering.set()
        self.bus = Bus(redis, actor=registry.Actor.WORKER_MANAGER)
        self.wrapper_bus = Bus(redis, actor=registry.Actor.WORKER_WRAPPER)
        self.workers: dict[str, FakeWorker] = {}
        self.commands: list[CreateWorkerCommand] = []
        self.deleted: list[str] = []
        self._ids = itertools.count(1)
        self._consumer = self.bus.consumer(
            registry.get("worker:commands").name, self._on_command, block_ms=200
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Consume `worker:commands`."""
        await self._consumer.ensure_groups()
        self._task = asyncio.create_task(self._consumer.run())

    async def stop(self) -> None:
        """Stop the manager and every worker."""
        for worker in self.workers.values():
            worker.consumer.stop()
        self._consumer.stop()
        tasks = [w.task for w in self.workers.values()]
        await stop_tasks([*tasks, *([self._task] if self._task else [])])

    async def kill(self, worker_id: str) -> None:
        """The worker dies: its consumer stops and its record says failed."""
        worker = self.workers[worker_id]
        worker.dead = True  # a dead process answers nothing, whatever its handlers were doing
        worker.consumer.stop()
        await stop_tasks([worker.task], grace_s=0.5)
        await self.redis.hset(worker_record_key(worker_id), "status", "failed")
        await self._revoke(worker)

    async def _revoke(self, worker: FakeWorker) -> None:
        if worker.key_id is not None:
            await self.api.revoke_key(worker.key_id)
            worker.key_id = None

    async def _on_delete(self, command: DeleteWorkerCommand) -> None:
        self.deleted.append(command.worker_id)
        worker = self.workers.get(command.worker_id)
        if worker is not None:
            worker.dead = True
            worker.consumer.stop()
            await self.redis.hset(worker_record_key(worker.worker_id), "status", "stopped")
            await self._revoke(worker)
        reply = DeleteWorkerResponse(request_id=command.request_id, success=worker is not None)
        await self.bus.publish(registry.get("worker:responses").name, reply)

    async def _on_command(self, command: object, _ctx: MessageContext) -> None:
        if isinstance(command, DeleteWorkerCommand):
            await self._on_delete(command)
            return
        assert isinstance(command, CreateWorkerCommand)
        self.commands.append(command)
        responses = registry.get("worker:responses").name
        if self.fail_create:
            reply = CreateWorkerResponse(
                request_id=command.request_id, success=False, error="no capacity"
            )
            await self.bus.publish(responses, reply)
            return
        worker_id = f"po-{next(self._ids)}"
        workspace = self.workdir / worker_id
        workspace.mkdir(parents=True)
        stream = registry.get("worker:{id}:input").format(id=worker_id)
        holder: dict[str, FakeWorker] = {}

        async def on_input(message: object, ctx: MessageContext) -> None:
            assert isinstance(message, WorkerInputMessage)
            await self._answer(holder["worker"], message, ctx.correlation_id)

        env = dict(command.config.env_vars)
        key_id = None
        if command.context.get(API_KEY_ENV_CONTEXT):
            created = await self.api.create_key(
                ApiKeyCreate(
                    name=f"worker {worker_id}",
                    user_id=int(command.context[OWNER_CONTEXT]),
                )
            )
            env[command.context[API_KEY_ENV_CONTEXT]], key_id = created.key, created.id
        consumer = self.wrapper_bus.consumer(stream, on_input, concurrency=1, block_ms=200)
        await consumer.ensure_groups()
        worker = FakeWorker(
            worker_id, env, workspace, consumer, asyncio.create_task(consumer.run()), key_id
        )
        holder["worker"] = worker
        self.workers[worker_id] = worker
        await self.redis.hset(worker_record_key(worker_id), "status", "running")
        reply = CreateWorkerResponse(
            request_id=command.request_id, success=True, worker_id=worker_id
        )
        await self.bus.publish(responses, reply)

    async def _answer(
        self, worker: FakeWorker, message: WorkerInputMessage, correlation_id: str
    ) -> None:
        worker.prompts.append(message.prompt)
        await self.answering.wait()
        if worker.dead:
            return
        agent = BuiltinPoAgent(fallback=BuiltinAgent())
        request = AgentRequest(
            request_id=message.request_id,
            prompt=message.prompt,
            workspace=worker.workspace,
            timeout_s=float(message.timeout),
            env=worker.env,
            correlation_id=correlation_id,  # as the real wrapper does (`handle_input`)
        )
        result = await agent.run(request, ignore_activity)
        output = WorkerOutputMessage(
            request_id=message.request_id,
            status=result.status,
            response=result.response,
            error=result.error,
            duration_ms=1,
        )
        stream = registry.get("worker:{id}:output").format(id=worker.worker_id)
        await self.wrapper_bus.publish(stream, output)


class FakeLanggraph:
    """Runs engineering and deploy tasks: status through the API, progress, a served URL."""

    def __init__(self, redis: aioredis.Redis, api: ApiClient, *, step_s: float = 0.15) -> None:
        self.bus = Bus(redis, actor=registry.Actor.LANGGRAPH)
        self.api = api
        self.step_s = step_s
        self.release = asyncio.Event()
        """Set to let tasks finish; cleared, a task waits after its first steps."""
        self.release.set()
        self.reached_gate = asyncio.Event()
        self.apps: list[web.AppRunner] = []
        self._consumers = [
            self.bus.consumer(registry.get("engineering:queue").name, self._run, block_ms=200),
            self.bus.consumer(registry.get("deploy:queue").name, self._run, block_ms=200),
        ]
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Consume both queues."""
        for consumer in self._consumers:
            await consumer.ensure_groups()
            self._tasks.append(asyncio.create_task(consumer.run()))

    async def stop(self) -> None:
        """Stop consuming; stop the served apps."""
        self.release.set()
        for consumer in self._consumers:
            consumer.stop()
        await stop_tasks(self._tasks)
        for runner in self.apps:
            await runner.cleanup()

    async def _progress(self, task_id: str, kind: str, pct: int, step: str) -> None:
        event = ProgressEvent(
            type=kind,  # type: ignore[arg-type]  # the callers pass the Literal's values
            request_id=task_id,
            task_id=task_id,
            progress_pct=pct,
            current_step=step,
            message=f"{step} ({pct}%)",
        )
        await self.bus.progress(task_id, event)
        await asyncio.sleep(self.step_s)

    async def _run(self, message: object, _ctx: MessageContext) -> None:
        assert isinstance(message, EngineeringMessage | DeployMessage)
        task_id = message.task_id
        await self.api.update_task(task_id, TaskUpdate(status=TaskStatus.RUNNING))
        await self._progress(task_id, "started", 0, "started")
        if isinstance(message, EngineeringMessage):
            await self._progress(task_id, "progress", 30, "scaffold")
            await self._progress(task_id, "progress", 60, "developer")
            self.reached_gate.set()
            await self.release.wait()
            sha = hashlib.sha1(task_id.encode()).hexdigest()  # noqa: S324  # a fake commit id
            result: dict[str, object] = {"commit_sha": sha, "branch": "main"}
        else:
            await self._progress(task_id, "progress", 50, "ansible")
            result = {"deployed_url": await self._serve(message.project_id)}
        await self.api.update_task(task_id, TaskUpdate(status=TaskStatus.COMPLETED, result=result))
        await self.bus.progress(
            task_id,
            ProgressEvent(type="completed", request_id=task_id, task_id=task_id, progress_pct=100),
        )

    async def _serve(self, project_id: str) -> str:
        async def hello(_request: web.Request) -> web.Response:
            return web.Response(text=f"hello from {project_id}")

        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.apps.append(runner)
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return f"http://127.0.0.1:{port}/"


async def stop_tasks(tasks: list[asyncio.Task[None]], *, grace_s: float = 5.0) -> None:
    """Let stopped consumers' tasks end; cancel what is still running after `grace_s`."""
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=grace_s)
    for task in late:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
