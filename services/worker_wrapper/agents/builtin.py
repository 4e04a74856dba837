"""The built-in deterministic agent: no LLM, for runs without a configured coding agent.

In a git workspace it records the prompt in ``.builtin-agent/<request_id>.md``, commits that
file alone, pushes the branch when the repository has a remote, and answers with the commit
sha. Outside a repository it records the prompt the same way and answers what it did. It is
what the embedded mode uses when no agent CLI is configured, and it says so in every answer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from services.worker_wrapper.agents.base import (
    ActivitySink,
    AgentActivity,
    AgentRequest,
    AgentResult,
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


class _GitError(Exception):
    """A git command of the built-in agent failed."""


class BuiltinAgent:
    """Records each prompt in the workspace, commits and pushes it; answers the commit."""

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

    def _record(self, request: AgentRequest) -> Path:
        record = request.workspace / _RECORD_DIR / f"{request.request_id}.md"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(request.prompt + "\n", encoding="utf-8")
        return record

    async def run(self, request: AgentRequest, on_activity: ActivitySink) -> AgentResult:
        """Record, commit and push the prompt; answer the commit sha."""
        deadline = time.monotonic() + request.timeout_s
        record = self._record(request)
        relative = str(record.relative_to(request.workspace))
        await on_activity(AgentActivity("file", relative))
        if not (request.workspace / ".git").exists():
            return AgentResult(
                status="success",
                response=f"{BUILTIN_AGENT_NOTICE} recorded the prompt in {relative}",
            )
        try:
            await self._git(request, deadline, "add", "--", relative)
            title = request.prompt.strip().splitlines()[0][:72] if request.prompt.strip() else ""
            await self._git(
                request, deadline, "commit", "-q", "-m", f"builtin agent: {title or 'prompt'}"
            )
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
                f"{BUILTIN_AGENT_NOTICE} recorded the prompt in {relative}, "
                f"committed {sha} on {branch}{pushed}.\ncommit: {sha}"
            ),
        )
