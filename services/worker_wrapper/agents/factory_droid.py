"""The `factory-droid` adapter: `droid exec` in its headless stream-json mode.

Invocation: ``droid exec --output-format stream-json --auto <low|medium|high>
[--session-id <id>] --file <prompt file>``; the prompt is written to a file in the worker's
private directory, never put in argv. Every stdout line is a JSON event: ``system``
(``init`` carries ``session_id``), ``message`` (``role``, ``text``), ``tool_call``
(``toolName``, ``parameters``), ``tool_result`` (``isError``), ``error`` (``message``) and one final
``completion`` (``finalText``, ``session_id``, ``usage``).

The CLI signs in to Factory with ``FACTORY_API_KEY``; a model of the user's own (BYOK: a
``customModels`` entry of ``~/.factory/settings.json``, chosen with ``model``
``custom:<displayName>-<index>``) talks to that model's API directly.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from services.worker_wrapper.agents.base import (
    ActivitySink,
    AgentActivity,
    AgentRequest,
    AgentResult,
)
from services.worker_wrapper.agents.cli_agent import run_stream_agent, write_prompt_file
from services.worker_wrapper.agents.streams import decode_line, describe_tool, error_text

__all__ = ["AutonomyLevel", "DroidStreamParser", "FactoryDroidAgent"]

AutonomyLevel = Literal["low", "medium", "high"]


class DroidStreamParser:
    """Turns droid's stream-json lines into activity and a result."""

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.texts: list[str] = []
        self.completion: dict[str, Any] | None = None
        self.errors: list[str] = []
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
        if kind == "message" and event.get("role") == "assistant":
            text = event.get("text")
            if isinstance(text, str) and text:
                self.texts.append(text)
                return [AgentActivity("text", text[:200])]
        if kind == "tool_call":
            name = str(event.get("toolName") or event.get("toolId") or "tool")
            summary, touched = describe_tool(name, event.get("parameters"))
            found = [AgentActivity("tool", summary)]
            if touched:
                found.append(AgentActivity("file", touched))
            return found
        if kind == "tool_result" and event.get("isError") is True:
            error = event.get("error")
            detail = error.get("message") if isinstance(error, dict) else event.get("value")
            tool = event.get("toolName") or event.get("toolId") or "tool"
            return [AgentActivity("warning", f"{tool} failed: {str(detail)[:160]}")]
        if kind == "error":
            message = str(event.get("message") or event.get("error") or "error")
            self.errors.append(message)
            return [AgentActivity("warning", message[:200])]
        if kind == "completion":
            self.completion = event
        return []

    def partial(self) -> str:
        """The assistant's text so far."""
        return "\n".join(self.texts)

    def finish(self, *, exit_code: int, stderr_tail: str) -> AgentResult:
        """The result once the CLI exited."""
        done = self.completion
        if done is None or exit_code != 0:
            reason = "; ".join(self.errors) or "droid exited without a completion event"
            return AgentResult(
                status="error",
                response=self.partial() or None,
                error=error_text(reason, exit_code=exit_code, stderr_tail=stderr_tail),
                session_id=self.session_id,
                exit_code=exit_code,
            )
        text = done.get("finalText")
        usage = done.get("usage")
        return AgentResult(
            status="success",
            response=text if isinstance(text, str) else self.partial(),
            session_id=self.session_id,
            usage=dict(usage) if isinstance(usage, dict) else {},
            exit_code=exit_code,
        )


class FactoryDroidAgent:
    """Factory's Droid through its CLI (`droid exec -o stream-json`)."""

    name = "factory-droid"
    supports_sessions = True

    def __init__(
        self,
        command: Sequence[str] = ("droid",),
        *,
        autonomy: AutonomyLevel = "high",
        extra_args: Sequence[str] = (),
        kill_grace_s: float = 2.0,
        model: str | None = None,
        run_as: tuple[int, int] | None = None,
    ) -> None:
        self.command = list(command)
        self.run_as = run_as
        self.model = model
        self.autonomy: AutonomyLevel = autonomy
        self.extra_args = list(extra_args)
        self.kill_grace_s = kill_grace_s

    def argv(self, session_id: str | None, prompt_file: Path) -> list[str]:
        """The command line for one prompt read from `prompt_file`."""
        argv = [*self.command, "exec", "--output-format", "stream-json", "--auto", self.autonomy]
        if session_id:
            argv += ["--session-id", session_id]
        if self.model:
            argv += ["--model", self.model]
        return [*argv, *self.extra_args, "--file", str(prompt_file)]

    async def run(self, request: AgentRequest, on_activity: ActivitySink) -> AgentResult:
        """Run one prompt through `droid exec`."""
        with tempfile.TemporaryDirectory(prefix="droid-prompt-") as tmp:
            prompt_file = write_prompt_file(Path(tmp), request.prompt, self.run_as)
            return await run_stream_agent(
                self.argv(request.session_id, prompt_file),
                request,
                DroidStreamParser(),
                on_activity,
                stdin_text=None,
                kill_grace_s=self.kill_grace_s,
                run_as=self.run_as,
            )
