"""The generic `command` adapter: any CLI through an argv template.

A new agent needs configuration, not code: ``command_template`` is an argv list whose items
may hold the placeholders ``{workspace}``, ``{prompt_file}`` and ``{session_id}``. The prompt
also goes to stdin. Output: with ``output_format="text"`` stdout is the answer; with
``"claude-stream-json"``, ``"droid-stream-json"`` or ``"codex-json"`` the stream is parsed
like those CLIs'.
A non-zero exit is an error carrying the tail of stderr.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from services.worker_wrapper.agents.base import (
    ActivitySink,
    AgentActivity,
    AgentRequest,
    AgentResult,
    StreamParser,
)
from services.worker_wrapper.agents.claude_code import ClaudeStreamParser
from services.worker_wrapper.agents.cli_agent import run_stream_agent, write_prompt_file
from services.worker_wrapper.agents.codex import CodexStreamParser
from services.worker_wrapper.agents.factory_droid import DroidStreamParser
from services.worker_wrapper.agents.kinds import CommandOutputFormat
from services.worker_wrapper.agents.streams import error_text
from services.worker_wrapper.errors import AgentConfigError

__all__ = ["CommandAgent", "CommandOutputFormat", "TextStreamParser"]

_PLACEHOLDERS = ("{workspace}", "{prompt_file}", "{session_id}")


class TextStreamParser:
    """Plain text output: every stdout line is part of the answer."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def feed(self, line: str) -> list[AgentActivity]:
        """Take one stdout line."""
        self.lines.append(line)
        return []

    def partial(self) -> str:
        """The output so far."""
        return "\n".join(self.lines)

    def finish(self, *, exit_code: int, stderr_tail: str) -> AgentResult:
        """Success on exit code 0, else an error with stderr's tail."""
        if exit_code != 0:
            return AgentResult(
                status="error",
                response=self.partial() or None,
                error=error_text(
                    "agent command failed", exit_code=exit_code, stderr_tail=stderr_tail
                ),
                exit_code=exit_code,
            )
        return AgentResult(status="success", response=self.partial().strip(), exit_code=0)


class CommandAgent:
    """Any agent CLI described by an argv template."""

    name = "command"

    def __init__(
        self,
        template: Sequence[str],
        *,
        output_format: CommandOutputFormat = "text",
        kill_grace_s: float = 2.0,
        run_as: tuple[int, int] | None = None,
    ) -> None:
        if not template:
            raise AgentConfigError("the command adapter needs a non-empty command_template")
        self.template = list(template)
        self.output_format: CommandOutputFormat = output_format
        self.kill_grace_s = kill_grace_s
        self.run_as = run_as

    @property
    def supports_sessions(self) -> bool:
        """True when the template passes a session id and the output reports one."""
        return any("{session_id}" in part for part in self.template) and (
            self.output_format != "text"
        )

    def argv(self, *, workspace: Path, prompt_file: Path, session_id: str | None) -> list[str]:
        """The template with its placeholders filled (plain replacement, no format spec)."""
        values = (str(workspace), str(prompt_file), session_id or "")
        argv: list[str] = []
        for part in self.template:
            for placeholder, value in zip(_PLACEHOLDERS, values, strict=True):
                part = part.replace(placeholder, value)
            argv.append(part)
        return argv

    def _parser(self) -> StreamParser:
        if self.output_format == "claude-stream-json":
            return ClaudeStreamParser()
        if self.output_format == "droid-stream-json":
            return DroidStreamParser()
        if self.output_format == "codex-json":
            return CodexStreamParser()
        return TextStreamParser()

    async def run(self, request: AgentRequest, on_activity: ActivitySink) -> AgentResult:
        """Run one prompt through the templated command."""
        with tempfile.TemporaryDirectory(prefix="agent-prompt-") as tmp:
            prompt_file = write_prompt_file(Path(tmp), request.prompt, self.run_as)
            argv = self.argv(
                workspace=request.workspace, prompt_file=prompt_file, session_id=request.session_id
            )
            return await run_stream_agent(
                argv,
                request,
                self._parser(),
                on_activity,
                stdin_text=request.prompt,
                kill_grace_s=self.kill_grace_s,
                run_as=self.run_as,
            )
