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
from services.worker_wrapper.agents.cli_agent import CliAgent, write_prompt_file
from services.worker_wrapper.agents.pricing import Budget, PriceTable
from services.worker_wrapper.agents.stream_json import StreamJsonParser
from services.worker_wrapper.agents.streams import error_text

__all__ = ["AutonomyLevel", "DroidStreamParser", "FactoryDroidAgent"]

AutonomyLevel = Literal["low", "medium", "high"]


class DroidStreamParser(StreamJsonParser):
    """Turns droid's stream-json lines into activity and a result."""

    def __init__(self) -> None:
        super().__init__()
        self.completion: dict[str, Any] | None = None
        self.errors: list[str] = []

    def usage_so_far(self) -> list[tuple[str | None, dict[str, Any]]]:
        """The completion's usage (droid reports usage once, at the end)."""
        usage = self.completion.get("usage") if self.completion else None
        return [(self.model, usage)] if isinstance(usage, dict) else []

    def handle(self, event: dict[str, Any]) -> list[AgentActivity]:
        """Map one event."""
        kind = event.get("type")
        if kind == "system" and event.get("subtype") == "init":
            if isinstance(event.get("model"), str):
                self.model = event["model"]
            return self.started()
        if kind == "message" and event.get("role") == "assistant":
            text = event.get("text")
            return self.text(text) if isinstance(text, str) and text else []
        if kind == "tool_call":
            name = str(event.get("toolName") or event.get("toolId") or "tool")
            call_id = event.get("id")
            return self.tool_call(
                name,
                event.get("parameters"),
                call_id=call_id if isinstance(call_id, str) else None,
            )
        if kind == "tool_result":
            return self._tool_result(event)
        if kind == "error":
            message = str(event.get("message") or event.get("error") or "error")
            self.errors.append(message)
            return [AgentActivity("warning", message[:200])]
        if kind == "completion":
            self.completion = event
        return []

    def _tool_result(self, event: dict[str, Any]) -> list[AgentActivity]:
        failed = event.get("isError") is True
        error = event.get("error")
        detail = error.get("message") if isinstance(error, dict) else event.get("value")
        call_id = event.get("id")
        self.tool_outcome(
            call_id if isinstance(call_id, str) else None, ok=not failed, detail=detail
        )
        if not failed:
            return []
        tool = event.get("toolName") or event.get("toolId") or "tool"
        return [AgentActivity("warning", f"{tool} failed: {str(detail)[:160]}")]

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


class FactoryDroidAgent(CliAgent):
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
        budget_usd: float | None = None,
        budgets: Sequence[Budget] = (),
        prices: PriceTable | None = None,
    ) -> None:
        super().__init__(
            command,
            kill_grace_s=kill_grace_s,
            run_as=run_as,
            budget_usd=budget_usd,
            budgets=budgets,
            prices=prices,
        )
        self.model = model
        self.autonomy: AutonomyLevel = autonomy
        self.extra_args = list(extra_args)

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
            parser = DroidStreamParser()
            parser.model = self.model
            return await self.run_parsed(
                self.argv(request.session_id, prompt_file),
                request,
                parser,
                on_activity,
                stdin_text=None,
            )
