"""The `claude-code` adapter: `claude -p` in its headless stream-json mode.

Invocation: ``claude -p --output-format stream-json --verbose [--resume <session>]
--permission-mode <mode>``, the prompt on stdin (never argv). Every stdout line is a JSON
event: ``system`` (``init`` carries ``session_id``), ``assistant`` / ``user`` (a Messages API
message whose content holds ``text`` and ``tool_use`` blocks) and one final ``result``
(``subtype`` ``success`` or ``error_*``, ``is_error``, ``result`` text, ``session_id``,
``usage``, ``total_cost_usd``). A model API failure (HTTP 5xx, 529, a broken stream) ends
the run, after the CLI's own retries, with ``is_error`` and ``api_error_status``.

The CLI gets its key from the environment (``ANTHROPIC_API_KEY`` or ``ANTHROPIC_AUTH_TOKEN``,
``ANTHROPIC_BASE_URL`` for a gateway). The adapter adds quiet defaults: no telemetry, no
auto-update, no non-essential traffic. As root the CLI refuses ``bypassPermissions``
unless told it runs in a sandbox: with ``root_sandbox`` (the default) the adapter sets
``IS_SANDBOX=1`` for a CLI running as root. With ``run_as`` the CLI runs as an unprivileged
user instead and needs no such switch (see docs/agents.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Unpack

from services.worker_wrapper.agents.base import (
    ActivitySink,
    AgentActivity,
    AgentRequest,
    AgentResult,
)
from services.worker_wrapper.agents.cli_agent import CliAgent, CliOptions
from services.worker_wrapper.agents.stream_json import StreamJsonParser
from services.worker_wrapper.agents.streams import error_text

__all__ = ["ClaudeCodeAgent", "ClaudeStreamParser"]


class ClaudeStreamParser(StreamJsonParser):
    """Turns Claude Code's stream-json lines into activity and a result."""

    def __init__(self) -> None:
        super().__init__()
        self.final: dict[str, Any] | None = None
        self.message_usage: dict[str, tuple[str | None, dict[str, Any]]] = {}
        """Usage of each model message so far (a message spans several events)."""

    def usage_so_far(self) -> list[tuple[str | None, dict[str, Any]]]:
        """The final usage once known, else the messages'."""
        final = self.final
        if final is not None and isinstance(final.get("usage"), dict):
            return [(self.model, final["usage"])]
        return list(self.message_usage.values())

    def handle(self, event: dict[str, Any]) -> list[AgentActivity]:
        """Map one event."""
        kind = event.get("type")
        if kind == "system" and event.get("subtype") == "init":
            if isinstance(event.get("model"), str):
                self.model = event["model"]
            return self.started()
        if kind == "assistant":
            return self._assistant(event)
        if kind == "user":
            return self._tool_results(event)
        if kind == "system" and event.get("subtype") == "api_retry":
            status = event.get("error_status") or event.get("error") or "?"
            return [AgentActivity("warning", f"model API error {status}; retrying")]
        if kind == "result":
            self.final = event
        return []

    def _assistant(self, event: dict[str, Any]) -> list[AgentActivity]:
        message = event.get("message")
        if isinstance(message, dict) and isinstance(message.get("usage"), dict):
            model = message.get("model") if isinstance(message.get("model"), str) else None
            key = str(message.get("id") or len(self.message_usage))
            self.message_usage[key] = (model or self.model, message["usage"])
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            return []
        found: list[AgentActivity] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                found += self.text(block["text"])
            elif block.get("type") == "tool_use":
                call_id = block.get("id") if isinstance(block.get("id"), str) else None
                name = str(block.get("name", "tool"))
                found += self.tool_call(name, block.get("input"), call_id=call_id)
        return found

    def _tool_results(self, event: dict[str, Any]) -> list[AgentActivity]:
        message = event.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            return []
        found: list[AgentActivity] = []
        for block in content:
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            failed = block.get("is_error") is True
            call_id = block.get("tool_use_id")
            self.tool_outcome(
                call_id if isinstance(call_id, str) else None,
                ok=not failed,
                detail=_result_text(block.get("content")),
            )
            if failed:
                detail = _result_text(block.get("content"))[:160]
                found.append(AgentActivity("warning", f"tool failed: {detail}"))
        return found

    @staticmethod
    def _failure(final: dict[str, Any], text: str | None) -> str:
        status = final.get("api_error_status")
        reason = final.get("terminal_reason")
        if status or reason == "api_error":
            where = f" (HTTP {status})" if status else ""
            return f"the model API failed{where}: {text or 'no detail'}"
        subtype = final.get("subtype")
        what = subtype if subtype and subtype != "success" else "an error"
        return f"claude reported {what}: {text or ''}".strip()

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
                    self._failure(final, text),
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


def _result_text(content: Any) -> str:
    """The text of a tool result's content (a string, or a list of text blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [b.get("text") for b in content if isinstance(b, dict)]
        return " ".join(p for p in parts if isinstance(p, str))
    return "" if content is None else str(content)


class ClaudeCodeAgent(CliAgent):
    """Claude Code through its CLI (`claude -p ... --output-format stream-json`)."""

    name = "claude-code"
    supports_sessions = True

    def __init__(
        self,
        command: Sequence[str] = ("claude",),
        *,
        permission_mode: str = "bypassPermissions",
        extra_args: Sequence[str] = (),
        model: str | None = None,
        max_retries: int | None = None,
        root_sandbox: bool = True,
        **options: Unpack[CliOptions],
    ) -> None:
        super().__init__(command, **options)
        self.permission_mode = permission_mode
        self.extra_args = list(extra_args)
        self.model = model
        self.max_retries = max_retries
        self.root_sandbox = root_sandbox

    def environment(self) -> dict[str, str]:
        """The adapter's defaults for the CLI's environment (the worker's own win)."""
        env = {
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
        }
        if self.max_retries is not None:
            env["CLAUDE_CODE_MAX_RETRIES"] = str(self.max_retries)
        as_root = os.geteuid() == 0 if self.run_as is None else self.run_as[0] == 0
        if self.root_sandbox and as_root:
            env["IS_SANDBOX"] = "1"
        return env

    def argv(self, session_id: str | None) -> list[str]:
        """The command line for one prompt (the prompt itself goes to stdin)."""
        argv = [*self.command, "-p", "--output-format", "stream-json", "--verbose"]
        if session_id:
            argv += ["--resume", session_id]
        if self.model:
            argv += ["--model", self.model]
        argv += ["--permission-mode", self.permission_mode, *self.extra_args]
        return argv

    async def run(self, request: AgentRequest, on_activity: ActivitySink) -> AgentResult:
        """Run one prompt through `claude`; with a budget, the run is stopped (its whole
        process tree) as soon as the usage it streams reaches the cap."""
        parser = ClaudeStreamParser()
        parser.model = self.model
        return await self.run_parsed(
            self.argv(request.session_id),
            request,
            parser,
            on_activity,
            stdin_text=request.prompt,
            extra_env=self.environment(),
        )
