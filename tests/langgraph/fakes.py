"""Fakes of the actors around langgraph, consuming the real queues on the real Redis.

Each fake is what the real actor does, cut to the bone: the scaffolder creates a real bare
repository with a first commit and marks the project scaffolded through the real API; the
worker-manager "runs" an instant agent that clones, commits and pushes for real; infra-service
starts a real HTTP server and answers its URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from services.worker_manager.workspace import clone_repository
from services.worker_wrapper.directives import parse_directive, run_directive
from shared import registry
from shared.api_client import ApiClient
from shared.api_client.schemas import ProjectUpdate
from shared.contracts import (
    AgentRunRecord,
    AnsibleDeployMessage,
    AnsibleDeployResult,
    BaseResult,
    CreateWorkerCommand,
    CreateWorkerResponse,
    DeleteWorkerCommand,
    DeleteWorkerResponse,
    ProjectStatus,
    ScaffolderMessage,
    SendMessageCommand,
    SendMessageResponse,
)
from shared.git import LocalGitProvider, commit_all, init_worktree, push
from shared.messaging import Bus, Consumer, MessageContext
from shared.redis_server import free_port

RESPONSES = registry.get("worker:responses").name

FAILED_RUN = AgentRunRecord(
    agent="fake-agent",
    status="error",
    prompt_chars=100,
    error="agent crashed",
    input_tokens=12_000,
    output_tokens=800,
    cost_usd=0.42,
    duration_ms=900,
    exit_code=1,
)
"""The run record a failing (`FAIL`) agent answers with: what it spent before it crashed."""


async def scaffold_repo(git: LocalGitProvider, full_name: str) -> str:
    """A bare repository with a first commit on main; returns its clone URL."""
    repo = await git.create_repo(full_name)
    if await git.head_of(full_name, "main") is None:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / "w"
            await init_worktree(work)
            (work / "README.md").write_text(f"# {full_name}\n", encoding="utf-8")
            await commit_all(work, "scaffold")
            await push(work, repo.clone_url, "main")
    return repo.clone_url


@dataclass
class FakeScaffolder:
    """Consumes `scaffolder:queue`: a real repository, the project marked scaffolded."""

    git: LocalGitProvider
    api: ApiClient
    messages: list[ScaffolderMessage] = field(default_factory=list)
    fail: bool = False

    async def handle(self, message: ScaffolderMessage, ctx: MessageContext) -> BaseResult:
        """Scaffold, or fail when told to."""
        self.messages.append(message)
        if self.fail:
            return BaseResult(request_id=message.request_id, status="failed", error="no template")
        url = await scaffold_repo(self.git, message.repo_full_name)
        await self.api.update_project(
            message.project_id, ProjectUpdate(status=ProjectStatus.SCAFFOLDING)
        )
        await self.api.update_project(
            message.project_id, ProjectUpdate(status=ProjectStatus.SCAFFOLDED, repository_url=url)
        )
        return BaseResult(request_id=message.request_id, status="success")


@dataclass
class FakeWorkerManager:
    """Consumes `worker:commands`; its instant agent commits and pushes a file per prompt
    (or, with `agent_command`, that command edits the workspace: `tests/fake_dev_agent.py`).

    Workspaces are cloned at create like the real manager's (`clone_repository`: the task
    branch from the remote, else from the base branch), and the reserved `@orchestrator`
    directives are answered by the real `run_directive` in them (real checks, real merges).
    A prompt containing `FAIL` makes the agent fail; `HANG` makes it never answer;
    `DIE-ONCE` kills the task's first worker under the prompt, `DIE` every worker (its registry
    record turns `failed`, as the real manager's does when a worker's process is gone);
    `hold` (an event) delays every answer to `send_message` until it is set."""

    bus: Bus
    workdir: Path
    redis: aioredis.Redis | None = None
    """Where the worker registry is kept (records: running, stopped, failed)."""
    deaths: dict[str, int] = field(default_factory=dict)
    commands: list[object] = field(default_factory=list)
    live: dict[str, dict[str, str]] = field(default_factory=dict)
    created: dict[str, str] = field(default_factory=dict)
    hold: asyncio.Event | None = None
    hold_create: asyncio.Event | None = None
    """When set, `create` answers only once this event is set."""
    hold_delete: asyncio.Event | None = None
    """When set, `delete` deletes and answers only once this event is set."""
    sent: asyncio.Event = field(default_factory=asyncio.Event)
    counter: int = 0
    agent_command: list[str] | None = None
    run: AgentRunRecord | None = None
    """The run record the default agent's successful answers carry (None: none)."""
    """The agent CLI run in the workspace (prompt on stdin), instead of the instant agent."""
    directive_hold: asyncio.Event | None = None
    """When set, directives (checks, merge) are answered only once this event is set."""
    directive_started: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(
        self,
        command: CreateWorkerCommand | SendMessageCommand | DeleteWorkerCommand,
        ctx: MessageContext,
    ) -> None:
        """Answer one command on `worker:responses`."""
        self.commands.append(command)
        answer: CreateWorkerResponse | SendMessageResponse | DeleteWorkerResponse
        if isinstance(command, CreateWorkerCommand):
            if self.hold_create is not None:
                await self.hold_create.wait()
            worker_id = self.created.get(command.request_id)
            if worker_id is None:  # dedupe by request_id, as the real manager does
                self.counter += 1
                worker_id = f"w{self.counter}"
                self.created[command.request_id] = worker_id
                self.live[worker_id] = dict(command.context)
                await self._clone(worker_id, command.context)
                await self._record(worker_id, "running")
            answer = CreateWorkerResponse(
                request_id=command.request_id, success=True, worker_id=worker_id
            )
        elif isinstance(command, SendMessageCommand):
            self.sent.set()
            if self.hold is not None:
                await self.hold.wait()
            if "HANG" in command.message:
                return
            answer = await self._die(command) or await self._agent(command)
        else:
            if self.hold_delete is not None:
                await self.hold_delete.wait()
            self.live.pop(command.worker_id, None)
            await self._record(command.worker_id, "stopped")
            answer = DeleteWorkerResponse(request_id=command.request_id, success=True)
        await self.bus.publish(RESPONSES, answer)

    async def _clone(self, worker_id: str, context: dict[str, str]) -> None:
        if not context.get("repo_url"):
            return
        work = self.workdir / worker_id
        work.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(
            clone_repository,
            context["repo_url"],
            work,
            context.get("branch"),
            agent_env(),
            base=context.get("base_branch"),
        )

    async def _record(self, worker_id: str, status: str) -> None:
        if self.redis is not None:
            await self.redis.hset(registry.worker_record_key(worker_id), "status", status)

    async def _die(self, command: SendMessageCommand) -> SendMessageResponse | None:
        """The worker's death under a `DIE` prompt: its record failed, a failure answer."""
        context = self.live.get(command.worker_id)
        if context is None or "DIE" not in command.message:
            return None
        task_id = context["task_id"]
        if "DIE-ONCE" in command.message and self.deaths.get(task_id, 0) >= 1:
            return None
        self.deaths[task_id] = self.deaths.get(task_id, 0) + 1
        del self.live[command.worker_id]
        await self._record(command.worker_id, "failed")
        return SendMessageResponse(
            request_id=command.request_id,
            success=False,
            error=f"worker {command.worker_id} died while handling the request: killed",
        )

    async def _agent(self, command: SendMessageCommand) -> SendMessageResponse:
        context = self.live.get(command.worker_id)
        if context is None:
            return SendMessageResponse(
                request_id=command.request_id, success=False, error="unknown worker"
            )
        work = self.workdir / command.worker_id
        directive = parse_directive(command.message)
        if directive is not None:
            self.directive_started.set()
            if self.directive_hold is not None:
                await self.directive_hold.wait()
            result = await run_directive(directive, work, agent_env(), command.timeout)
            return SendMessageResponse(
                request_id=command.request_id,
                success=result.status == "success",
                response=result.response,
                error=result.error,
            )
        if re.search(r"\bFAIL\b", command.message):  # not pytest's FAILED in a fix prompt
            return SendMessageResponse(
                request_id=command.request_id,
                success=False,
                error="agent crashed",
                run=FAILED_RUN,
            )
        if self.agent_command is not None:
            return await self._run_command(command, work)
        (work / "tasks").mkdir(exist_ok=True)
        (work / "tasks" / f"{context['task_id']}.md").write_text(command.message, encoding="utf-8")
        sha = await commit_all(work, "agent work")
        await push(work, context["repo_url"], context["branch"])
        return SendMessageResponse(
            request_id=command.request_id,
            success=True,
            response=f"Done. Commit {sha}.",
            run=self.run,
        )

    async def _run_command(self, command: SendMessageCommand, work: Path) -> SendMessageResponse:
        assert self.agent_command is not None
        process = await asyncio.create_subprocess_exec(
            *self.agent_command,
            cwd=work,
            env=agent_env(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate(command.message.encode())
        if process.returncode != 0:
            return SendMessageResponse(
                request_id=command.request_id, success=False, error=err.decode()[-2000:]
            )
        return SendMessageResponse(
            request_id=command.request_id, success=True, response=out.decode().strip()
        )

    def count(self, kind: type[object]) -> int:
        """How many commands of a kind arrived."""
        return sum(isinstance(c, kind) for c in self.commands)


@dataclass
class FakeInfra:
    """Consumes `ansible:deploy:queue`: starts a real HTTP server on the allocated port."""

    messages: list[AnsibleDeployMessage] = field(default_factory=list)
    correlation_ids: list[str] = field(default_factory=list)
    """The correlation id each deploy request travelled with, in order."""
    servers: dict[int, asyncio.Server] = field(default_factory=dict)
    fail: bool = False
    previous_serves: bool = False
    """With `fail`: say that the previous release still serves (its URL in the answer)."""
    url_port: int | None = None
    """Answer this port in the URL instead of the allocated one (a URL that does not answer)."""
    no_web: bool = False
    """Answer success without a URL and start nothing (a bot-only release)."""
    delegate: Callable[[AnsibleDeployMessage], Awaitable[AnsibleDeployResult]] | None = None
    """When set, every deploy goes to it (the real infra-service handler, in the tests that
    deploy with real Ansible)."""

    async def handle(
        self, message: AnsibleDeployMessage, ctx: MessageContext
    ) -> AnsibleDeployResult:
        """Deploy (start or replace the server on the port), or fail when told to."""
        self.messages.append(message)
        self.correlation_ids.append(ctx.correlation_id)
        if self.delegate is not None:
            return await self.delegate(message)
        if self.fail:
            kept = f"http://127.0.0.1:{message.port}/" if self.previous_serves else None
            return AnsibleDeployResult(
                request_id=message.request_id,
                status="failed",
                error="playbook failed",
                exit_code=2,
                deployed_url=kept,
            )
        if self.no_web:
            return AnsibleDeployResult(
                request_id=message.request_id,
                status="success",
                server_ip=message.server_ip,
                port=message.port,
                exit_code=0,
            )
        old = self.servers.pop(message.port, None)
        if old is not None:
            old.close()
            await old.wait_closed()
        self.servers[message.port] = await asyncio.start_server(_ok, "127.0.0.1", message.port)
        port = self.url_port or message.port
        return AnsibleDeployResult(
            request_id=message.request_id,
            status="success",
            deployed_url=f"http://127.0.0.1:{port}/",
            server_ip=message.server_ip,
            port=message.port,
            exit_code=0,
        )

    async def close(self) -> None:
        """Stop every server started."""
        for server in self.servers.values():
            server.close()
            await server.wait_closed()


async def _ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def running(*consumers: Consumer) -> AsyncIterator[None]:
    """Run consumers in the background for the block."""
    tasks = {asyncio.create_task(c.run()) for c in consumers}
    try:
        yield
    finally:
        for consumer in consumers:
            consumer.stop()
        pending = tasks
        while pending:  # cancel again while a cancellation got swallowed inside a consumer
            _, pending = await asyncio.wait(pending, timeout=1.0)
            for task in pending:
                task.cancel()


def agent_env() -> dict[str, str]:
    """The environment the fake's agents and directives run with (as a worker's would)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}


def unused_port() -> int:
    """A free TCP port."""
    return free_port()
