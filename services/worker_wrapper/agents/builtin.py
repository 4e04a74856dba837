"""The built-in deterministic agent: no LLM, for runs without a configured coding agent.

It implements one request, "add a /NAME endpoint [that returns TEXT]" (the grammar of
`builtin_endpoint`, documented in docs/builtin-agent.md): the route goes into the backend
module's app with a test of its own. Any other prompt is recorded in
``.builtin-agent/<request_id>.md`` and the answer says that it was not implemented. In a git
workspace it commits what it wrote (those files alone), pushes the branch when the
repository has a remote, and answers with the commit sha. It is what the embedded mode uses
when no agent CLI is configured, and it says so in every answer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from services.worker_wrapper.agents.base import (
    ActivitySink,
    AgentActivity,
    AgentRequest,
    AgentResult,
)
from services.worker_wrapper.agents.builtin_endpoint import (
    ENDPOINT_GRAMMAR,
    EndpointAdded,
    EndpointExists,
    EndpointRefused,
    EndpointSpec,
    add_endpoint,
    find_backend_module,
    parse_endpoint_spec,
)
from services.worker_wrapper.agents.process import run_cli

__all__ = ["BUILTIN_AGENT_NOTICE", "BuiltinAgent"]

BUILTIN_AGENT_NOTICE = "[built-in deterministic agent, no LLM]"
_RECORD_DIR = ".builtin-agent"
_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "orchestrator built-in agent",
    "GIT_AUTHOR_EMAIL": "builtin-agent@orchestrator.invalid",
    "GIT_COMMITTER_NAME": "orchestrator built-in agent",
    "GIT_COMMITTER_EMAIL": "builtin-agent@orchestrator.invalid",
}


@dataclass(frozen=True)
class _Work:
    """What the agent wrote (relative paths), how to say it, and the commit's title."""

    files: list[str]
    summary: str
    title: str


class _GitError(Exception):
    """A git command of the built-in agent failed."""


class BuiltinAgent:
    """Adds the endpoint a prompt asks for, or records the prompt; commits, pushes, answers."""

    name = "builtin"
    supports_sessions = False

    async def _git(self, request: AgentRequest, deadline: float, *args: str) -> str:
        lines: list[str] = []
        env: Mapping[str, str] = {**request.env, **_GIT_IDENTITY, "GIT_TERMINAL_PROMPT": "0"}
        remaining_s = max(deadline - time.monotonic(), 0.1)
        outcome = await run_cli(
            ["git", *args],
            cwd=request.workspace,
            env=env,
            stdin_text=None,
            timeout_s=remaining_s,
            on_line=lines.append,
        )
        if outcome.timed_out:
            raise TimeoutError(f"git {args[0]} timed out")
        if outcome.exit_code != 0:
            raise _GitError(f"git {args[0]} failed: {outcome.stderr_tail.strip()[-500:]}")
        return "\n".join(lines).strip()

    def _record(self, request: AgentRequest) -> str:
        record = request.workspace / _RECORD_DIR / f"{request.request_id}.md"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(request.prompt + "\n", encoding="utf-8")
        return record.relative_to(request.workspace).as_posix()

    def _work(self, request: AgentRequest) -> _Work:
        """Do what the prompt asks, or record it: the files written and what to answer."""
        spec = parse_endpoint_spec(request.prompt)
        if isinstance(spec, EndpointSpec):
            module = find_backend_module(request.workspace)
            if module is None:
                outcome: EndpointAdded | EndpointExists | EndpointRefused = EndpointRefused(
                    "the workspace has no backend module (a folder with a FastAPI app/main.py)"
                )
            else:
                outcome = add_endpoint(request.workspace, module, spec)
            if isinstance(outcome, EndpointAdded):
                return _Work(
                    files=outcome.files,
                    summary=(
                        f'added GET {spec.path} answering {{"message": {spec.text!r}}} '
                        f"to {outcome.main}, with its test {outcome.test}"
                    ),
                    title=f"add GET {spec.path}",
                )
            if isinstance(outcome, EndpointExists):
                record = self._record(request)
                return _Work(
                    files=[record],
                    summary=(
                        f"GET {spec.path} already exists in {outcome.main}, nothing to add; "
                        f"recorded the prompt in {record}"
                    ),
                    title=f"GET {spec.path} already exists",
                )
            spec = outcome
        record = self._record(request)
        reason = f" ({spec.reason})" if isinstance(spec, EndpointRefused) else ""
        return _Work(
            files=[record],
            summary=(
                f"did not implement this spec{reason}: the built-in agent only implements "
                f"'{ENDPOINT_GRAMMAR}' (see docs/builtin-agent.md); recorded the prompt in {record}"
            ),
            title=f"record spec {request.request_id}",
        )

    async def run(self, request: AgentRequest, on_activity: ActivitySink) -> AgentResult:
        """Do or record the prompt, commit and push it; answer the commit sha."""
        deadline = time.monotonic() + request.timeout_s
        work = self._work(request)
        for name in work.files:
            await on_activity(AgentActivity("file", name))
        if not (request.workspace / ".git").exists():
            return AgentResult(status="success", response=f"{BUILTIN_AGENT_NOTICE} {work.summary}")
        try:
            await self._git(request, deadline, "add", "--", *work.files)
            await self._git(request, deadline, "commit", "-q", "-m", f"builtin agent: {work.title}")
            sha = await self._git(request, deadline, "rev-parse", "HEAD")
            branch = await self._git(request, deadline, "rev-parse", "--abbrev-ref", "HEAD")
            await on_activity(AgentActivity("tool", f"git commit {sha[:12]}"))
            pushed = ""
            if await self._git(request, deadline, "remote"):
                await self._git(request, deadline, "push", "-q", "-u", "origin", branch)
                await on_activity(AgentActivity("tool", f"git push origin {branch}"))
                pushed = f", pushed to origin/{branch}"
        except TimeoutError as exc:
            return AgentResult(status="timeout", error=str(exc))
        except _GitError as exc:
            return AgentResult(status="error", error=str(exc))
        return AgentResult(
            status="success",
            response=(
                f"{BUILTIN_AGENT_NOTICE} {work.summary}; "
                f"committed {sha} on {branch}{pushed}.\ncommit: {sha}"
            ),
        )
