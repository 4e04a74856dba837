"""The one base of the stream-json parsers (Claude Code, Factory Droid, Codex).

Each CLI writes one JSON event per stdout line. `StreamJsonParser` does what every adapter
needs: decode the line (malformed lines are counted and skipped), follow the session id,
collect the assistant's text, keep a bounded transcript of the tool calls (name, file or
command, outcome) and price the usage seen so far. A subclass only maps its CLI's event
kinds (`handle`) and builds the final result (`finish`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from services.worker_wrapper.agents.base import AgentActivity, AgentResult, ToolUse
from services.worker_wrapper.agents.pricing import PriceTable
from services.worker_wrapper.agents.streams import decode_line, tool_target

__all__ = ["StreamJsonParser"]

_OUTCOME_CHARS = 160


class StreamJsonParser(ABC):
    """Shared state and helpers of a stream-json parser; see the module docstring."""

    max_tools = 200
    """How many tool calls the transcript keeps (later ones are only counted)."""

    session_keys: tuple[str, ...] = ("session_id",)
    """The event fields that carry the session id."""

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.texts: list[str] = []
        self.malformed_lines = 0
        self.model: str | None = None
        self.tools: list[ToolUse] = []
        self.tools_dropped = 0
        self._open_tools: dict[str, int] = {}
        """Tool-call id → its index in `tools`, until its outcome arrives."""
        self.metered: list[tuple[str | None, dict[str, Any]]] = []
        """Usage of each model response seen by a metering relay (beside the stream)."""
        self.usage_listener: Callable[[], None] | None = None
        """Called when usage arrives other than through a stdout line (the budget check)."""
        self.over_budget = False
        """Set by the budget check once the run reached its cap: a metering relay then
        lets no new request of the CLI reach its model (the process tree is being stopped;
        a CLI that retries in the meantime is refused)."""

    def feed(self, line: str) -> list[AgentActivity]:
        """Take one stdout line; answer the activity it reports."""
        event = decode_line(line)
        if event is None:
            if line.strip():
                self.malformed_lines += 1
            return []
        for key in self.session_keys:
            session = event.get(key)
            if isinstance(session, str) and session:
                self.session_id = session
        return self.handle(event)

    @abstractmethod
    def handle(self, event: dict[str, Any]) -> list[AgentActivity]:
        """Map one decoded event of the CLI."""

    @abstractmethod
    def finish(self, *, exit_code: int, stderr_tail: str) -> AgentResult:
        """The result once the process has exited."""

    def usage_so_far(self) -> list[tuple[str | None, dict[str, Any]]]:
        """(model, usage record) pairs of what the run used so far (none by default)."""
        return []

    def add_metered_usage(self, model: str | None, usage: dict[str, Any]) -> None:
        """Usage of one model response, as a metering relay saw it pass."""
        self.metered.append((model or self.model, usage))
        if self.usage_listener is not None:
            self.usage_listener()

    def spent_usd(self, prices: PriceTable) -> float:
        """What the run cost so far, by the price table."""
        return sum(prices.cost(model, usage) for model, usage in self.usage_so_far())

    def started(self) -> list[AgentActivity]:
        """The activity of a session's start."""
        return [AgentActivity("session", f"session {self.session_id or '?'} started")]

    def text(self, text: str) -> list[AgentActivity]:
        """An assistant text: kept for the answer, reported shortened."""
        self.texts.append(text)
        return [AgentActivity("text", text[:200])]

    def tool_call(
        self,
        name: str,
        arguments: Any,
        *,
        call_id: str | None = None,
        outcome: str = "unknown",
        target: str | None = None,
    ) -> list[AgentActivity]:
        """A tool call: recorded in the transcript, reported as `tool` (and `file`)."""
        detail, touched = tool_target(arguments)
        if target is not None:
            detail = target.replace("\n", " ")[:160]
        if len(self.tools) < self.max_tools:
            if call_id:
                self._open_tools[call_id] = len(self.tools)
            self.tools.append(ToolUse(name, detail, outcome))
        else:
            self.tools_dropped += 1
        found = [AgentActivity("tool", f"{name}: {detail}" if detail else name)]
        if touched:
            found.append(AgentActivity("file", touched))
        return found

    def tool_outcome(self, call_id: str | None, *, ok: bool, detail: Any = None) -> None:
        """The outcome of an earlier tool call (unknown ids are ignored)."""
        index = self._open_tools.pop(call_id, None) if call_id else None
        if index is None:
            return
        outcome = "ok"
        if not ok:
            text = str(detail if detail is not None else "").replace("\n", " ").strip()
            outcome = f"error: {text[:_OUTCOME_CHARS]}" if text else "error"
        tool = self.tools[index]
        self.tools[index] = ToolUse(tool.name, tool.target, outcome)

    def partial(self) -> str:
        """The assistant's text so far."""
        return "\n".join(self.texts)

    def record(self, result: AgentResult) -> AgentResult:
        """`result` with the transcript and the model of this run."""
        result.tools = list(self.tools)
        result.tools_dropped = self.tools_dropped
        result.model = result.model or self.model
        if result.session_id is None:
            result.session_id = self.session_id
        if not result.usage:
            totals: dict[str, Any] = {}
            for _model, usage in self.usage_so_far():
                for key, value in usage.items():
                    if isinstance(value, int) and key.endswith("_tokens"):
                        totals[key] = totals.get(key, 0) + value
            result.usage = totals
        return result
