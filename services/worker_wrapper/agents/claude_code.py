"""The `claude-code` adapter: `claude -p` in its headless stream-json mode.

Invocation: ``claude -p --output-format stream-json --verbose [--resume <session>]
--permission-mode <mode>``, the prompt on stdin (never argv). Every stdout line is a JSON
event: ``system`` (``init`` carries ``session_id``), ``assistant`` / ``user`` (a Messages API
message whose content holds ``text`` and ``tool_use`` blocks) and one final ``result``
(``subtype`` ``success`` or ``error_*``, ``is_error``, ``result`` text, ``session_id``,
``usage``, ``total_cost_usd``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.worker_wrapper.agents.base import (
    ActivitySink,
    AgentActivity,
    AgentRequest,
    AgentResult,
)
from services.worker_wrapper.agents.cli_agent import run_stream_agent
from services.worker_wrapper.agents.streams import decode_line, describe_tool, error_text

__all__ = ["ClaudeCodeAgent", "ClaudeStreamParser"]


class ClaudeStreamParser:
    """Turns Claude Code's stream-json lines into activity and a result."""

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.texts: list[str] = []
        self.final: dict[str, Any] | None = None
        self.malformed_lines = 0

    def feed(self, line: str) -> list[AgentActivity]:
        """Take one stdout line."""
        event = decode_line(line)
        if event is None:
            if line.strip():
                self.malformed_lines += 1
            return []
        session = event.get("session_id")
        if isinstance(session, str) and session:
            self.session_id = session
        kind = event.get("type")
        if kind == "system" and event.get("subtype") == "init":
            return [AgentActivity("session", f"session {self.session_id or '?'} started")]
        if kind == "assistant":
            return self._assistant(event)
        if kind == "result":
            self.final = event
        return []

    def _assistant(self, event: dict[str, Any]) -> list[AgentActivity]:
        message = event.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            return []
        found: list[AgentActivity] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                self.texts.append(block["text"])
                found.append(AgentActivity("text", block["text"][:200]))
            elif block.get("type") == "tool_use":
                summary, touched = describe_tool(str(block.get("name", "tool")), block.get("input"))
                found.append(AgentActivity("tool", summary))
                if touched:
                    found.append(AgentActivity("file", touched))
        return found

    def partial(self) -> str:
        """The assistant's text so far."""
        return "\n".join(self.texts)

    def finish(self, *, exit_code: int, stderr_tail: str) -> AgentResult:
        """The result once the CLI exited."""
        final = self.final
        if final is None:
            return AgentResult(
                status="error",
                response=self.partial() or None,
                error=error_text(
                    "claude exited without a result event",
                    exit_code=exit_code,
                    stderr_tail=stderr_tail,
                ),
                session_id=self.session_id,
                exit_code=exit_code,
            )
        usage = final.get("usage") if isinstance(final.get("usage"), dict) else {}
        cost = final.get("total_cost_usd", final.get("cost_usd"))
        text = final.get("result") if isinstance(final.get("result"), str) else None
        failed = bool(final.get("is_error")) or str(final.get("subtype", "success")) != "success"
        return AgentResult(
            status="error" if failed else "success",
            response=text if not failed else (text or self.partial() or None),
            error=(
                error_text(
                    f"claude reported {final.get('subtype', 'an error')}: {text or ''}".strip(),
                    exit_code=exit_code,
                    stderr_tail=stderr_tail,
                )
                if failed
                else None
            ),
            session_id=self.session_id,
            usage=dict(usage or {}),
            cost_usd=float(cost) if isinstance(cost, int | float) else None,
            exit_code=exit_code,
        )


class ClaudeCodeAgent:
    """Claude Code through its CLI (`claude -p ... --output-format stream-json`)."""

    name = "claude-code"
    supports_sessions = True

    def __init__(
        self,
        command: Sequence[str] = ("claude",),
        *,
        permission_mode: str = "bypassPermissions",
        extra_args: Sequence[str] = (),
        kill_grace_s: float = 2.0,
    ) -> None:
        self.command = list(command)
        self.permission_mode = permission_mode
        self.extra_args = list(extra_args)
        self.kill_grace_s = kill_grace_s

    def argv(self, session_id: str | None) -> list[str]:
        """The command line for one prompt (the prompt itself goes to stdin)."""
        argv = [*self.command, "-p", "--output-format", "stream-json", "--verbose"]
        if session_id:
            argv += ["--resume", session_id]
        argv += ["--permission-mode", self.permission_mode, *self.extra_args]
        return argv

    async def run(self, request: AgentRequest, on_activity: ActivitySink) -> AgentResult:
        """Run one prompt through `claude`."""
        return await run_stream_agent(
            self.argv(request.session_id),
            request,
            ClaudeStreamParser(),
            on_activity,
            stdin_text=request.prompt,
            kill_grace_s=self.kill_grace_s,
        )
