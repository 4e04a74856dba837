"""The wrapper's handler: one `WorkerInputMessage` in, one `WorkerOutputMessage` out.

Inputs are handled one at a time, in order. The agent runs with the worker's allowlisted
environment minus the wrapper's own variables; its activity becomes `ProgressEvent`s when the
worker belongs to a task. Secrets of the environment are masked in everything written back.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from redis.exceptions import RedisError

from services.worker_wrapper.agents import Agent, AgentActivity, AgentRequest, AgentResult
from services.worker_wrapper.agents.cli_agent import CliAgent
from services.worker_wrapper.directives import parse_directive, run_directive
from services.worker_wrapper.heartbeat import RegistryReporter
from services.worker_wrapper.session import SessionStore, split_fresh
from services.worker_wrapper.settings import CONTROL_ENV_PREFIXES, WrapperSettings
from shared import registry
from shared.chat.po_profile import CORRELATION_ID_ENV
from shared.contracts import (
    AgentRunRecord,
    AgentToolCall,
    ProgressEvent,
    WorkerInputMessage,
    WorkerOutputMessage,
)
from shared.contracts.queues.worker_io import ANSWER_CHARS
from shared.messaging import Bus, MessageContext, MessagingError, Retry

__all__ = ["WrapperService", "agent_environment", "mask_secrets", "run_record"]

log = structlog.get_logger("services.worker_wrapper")

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
_MIN_SECRET_CHARS = 6


def agent_environment(source: Mapping[str, str]) -> dict[str, str]:
    """The wrapper's environment without its own controls (WORKER_*, REDIS_URL, ...)."""
    return {k: v for k, v in source.items() if not k.startswith(CONTROL_ENV_PREFIXES)}


def mask_secrets(text: str | None, env: Mapping[str, str]) -> str | None:
    """`text` with the values of secret-looking variables replaced by `***`."""
    if not text:
        return text
    for name, value in env.items():
        if _SECRET_NAME.search(name) and len(value) >= _MIN_SECRET_CHARS:
            text = text.replace(value, "***")
    return text


def _tokens(usage: Mapping[str, object], *names: str) -> int:
    return sum(v for n in names if isinstance(v := usage.get(n), int) and v >= 0)


def run_record(
    agent: Agent,
    prompt: str,
    result: AgentResult,
    duration_ms: int,
    env: Mapping[str, str],
) -> AgentRunRecord:
    """The record of one agent run, with the environment's secrets masked."""
    answer = mask_secrets(result.response, env)
    if answer is not None and len(answer) > ANSWER_CHARS:
        answer = answer[:ANSWER_CHARS] + "\n[truncated]"
    usage = result.usage
    cached = _tokens(usage, "cached_input_tokens")  # OpenAI counts them inside the input
    return AgentRunRecord(
        agent=agent.name,
        agent_version=agent.version() if isinstance(agent, CliAgent) else None,
        model=result.model,
        status=result.status,
        prompt_chars=len(prompt),
        answer=answer,
        error=mask_secrets(result.error, env),
        tools=[
            AgentToolCall(
                name=tool.name[:200],
                target=mask_secrets(tool.target, env) or "",
                outcome=(mask_secrets(tool.outcome, env) or "")[:500],
            )
            for tool in result.tools
        ],
        tools_dropped=result.tools_dropped,
        input_tokens=max(0, _tokens(usage, "input_tokens") - cached),
        output_tokens=_tokens(usage, "output_tokens"),
        cache_read_tokens=_tokens(usage, "cache_read_input_tokens") + cached,
        cache_write_tokens=_tokens(usage, "cache_creation_input_tokens"),
        cost_usd=max(0.0, result.cost_usd or 0.0),
        duration_ms=duration_ms,
        exit_code=result.exit_code,
        session_id=result.session_id,
    )


@dataclass
class WrapperService:
    """Runs the agent for each input of one worker."""

    settings: WrapperSettings
    bus: Bus
    agent: Agent
    reporter: RegistryReporter
    sessions: SessionStore
    stopping: bool = False

    @property
    def output_stream(self) -> str:
        """`worker:{id}:output` of this worker."""
        return registry.get("worker:{id}:output").format(id=self.settings.id)

    async def _progress(self, request_id: str, message: str, step: str) -> None:
        task_id = self.settings.task_id
        if not task_id:
            return
        event = ProgressEvent(
            type="progress",
            request_id=request_id,
            task_id=task_id,
            message=message[:500],
            current_step=step,
        )
        with contextlib.suppress(MessagingError, RedisError, OSError):
            await self.bus.progress(task_id, event)

    async def handle_input(self, message: WorkerInputMessage, ctx: MessageContext) -> None:
        """Run the agent on the prompt and publish the answer (at most once per request)."""
        if self.stopping:
            raise Retry("the wrapper is stopping; the next wrapper of this worker handles it")
        key = f"worker-wrapper:{self.settings.id}:{message.request_id}"
        async with self.bus.once(key) as first:
            if not first:
                log.info("duplicate_input_skipped", request_id=message.request_id)
                return
            await self._answer(message, ctx.correlation_id)

    async def _answer(self, message: WorkerInputMessage, correlation_id: str | None = None) -> None:
        started = time.monotonic()
        await self.reporter.status("busy")
        await self._progress(message.request_id, f"worker {self.settings.id} started", "agent")
        env = agent_environment(os.environ)
        if correlation_id:  # what the agent creates (`orchestrator task create`) carries it
            env[CORRELATION_ID_ENV] = correlation_id
        try:
            result, ran_agent = await self._run_agent(message, env, correlation_id)
        finally:
            await self.reporter.status("running")
        duration_ms = int((time.monotonic() - started) * 1000)
        output = WorkerOutputMessage(
            request_id=message.request_id,
            status=result.status,
            response=mask_secrets(result.response, env),
            error=mask_secrets(result.error, env),
            duration_ms=duration_ms,
            run=(
                run_record(self.agent, message.prompt, result, duration_ms, env)
                if ran_agent
                else None
            ),
        )
        await self.bus.publish(self.output_stream, output)
        await self._progress(message.request_id, f"agent answered: {result.status}", "agent")
        log.info(
            "agent_answered",
            request_id=message.request_id,
            status=result.status,
            duration_ms=output.duration_ms,
            cost_usd=result.cost_usd,
            usage=result.usage or None,
        )

    async def _run_agent(
        self, message: WorkerInputMessage, env: dict[str, str], correlation_id: str | None
    ) -> tuple[AgentResult, bool]:
        """The result, and whether the agent ran (False: a directive answered)."""
        directive = parse_directive(message.prompt)
        if directive is not None and self.settings.profile == "developer":
            step = f"directive:{directive.verb}"
            await self._progress(message.request_id, f"running {directive.verb}", step)
            result = await run_directive(
                directive, self.settings.workspace, env, float(message.timeout)
            )
            return result, False
        prompt, fresh = split_fresh(message.prompt)
        session_id = None
        if self.agent.supports_sessions and not fresh:
            session_id = self.sessions.current()

        async def on_activity(activity: AgentActivity) -> None:
            if activity.kind != "text":
                await self._progress(message.request_id, activity.message, activity.kind)

        def request(session: str | None) -> AgentRequest:
            return AgentRequest(
                request_id=message.request_id,
                prompt=prompt,
                workspace=self.settings.workspace,
                timeout_s=float(message.timeout),
                env=env,
                session_id=session,
                correlation_id=correlation_id,
            )

        result = await self.agent.run(request(session_id), on_activity)
        if session_id and result.status == "error" and not _over_budget(result):
            log.info("resume_failed_starting_fresh", session_id=session_id, error=result.error)
            first = result
            result = await self.agent.run(request(None), on_activity)
            result.cost_usd = (result.cost_usd or 0.0) + (first.cost_usd or 0.0)
            result.tools = [*first.tools, *result.tools]
        if result.session_id and self.agent.supports_sessions:
            self.sessions.save(result.session_id)
        elif fresh:
            self.sessions.clear()
        return result, True


def _over_budget(result: AgentResult) -> bool:
    return (result.error or "").startswith("budget exceeded:")
