"""The one interface every coding agent sits behind, and the values it exchanges.

An `Agent` runs one prompt in a workspace and answers an `AgentResult`; while it works it
reports `AgentActivity` (tool calls, files touched, text) to a callback, which the wrapper
turns into `ProgressEvent`s when the request belongs to a task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

__all__ = [
    "ActivityKind",
    "ActivitySink",
    "Agent",
    "AgentActivity",
    "AgentRequest",
    "AgentResult",
    "AgentStatus",
    "StreamParser",
    "ToolUse",
    "ignore_activity",
]

AgentStatus = Literal["success", "error", "timeout"]
ActivityKind = Literal["session", "text", "tool", "file", "warning"]


@dataclass(frozen=True)
class AgentRequest:
    """One prompt for an agent."""

    request_id: str
    prompt: str
    workspace: Path
    timeout_s: float
    env: Mapping[str, str]
    """The complete environment of the agent's process (already allowlisted)."""
    session_id: str | None = None
    """The agent session to continue, or None for a fresh one."""
    correlation_id: str | None = None
    """The correlation id of the message that asked (a chat turn's): what the agent creates
    through the API (a PO's tasks) carries it."""


@dataclass(frozen=True)
class AgentActivity:
    """Something the agent did, worth telling a watching user."""

    kind: ActivityKind
    message: str


@dataclass(frozen=True)
class ToolUse:
    """One tool call of a run, for its record: the tool, its file or command, its outcome."""

    name: str
    target: str = ""
    """The file it touched or the command it ran (shortened), empty when neither."""
    outcome: str = "unknown"
    """`ok`, `error: <detail>`, `exit <code>`, or `unknown` (the run ended first)."""


@dataclass
class AgentResult:
    """The outcome of one prompt."""

    status: AgentStatus
    response: str | None = None
    """The final answer (success), or the partial output so far (timeout)."""
    error: str | None = None
    session_id: str | None = None
    """The session the agent used; the next prompt may resume it."""
    usage: dict[str, Any] = field(default_factory=dict)
    """Token usage figures as the agent reported them."""
    cost_usd: float | None = None
    exit_code: int | None = None
    model: str | None = None
    """The model the agent reported using, when it did."""
    tools: list[ToolUse] = field(default_factory=list)
    """The run's tool calls in order (bounded: see `StreamJsonParser.max_tools`)."""
    tools_dropped: int = 0
    """Tool calls left out of `tools` once the bound was reached."""


ActivitySink = Callable[[AgentActivity], Awaitable[None]]


async def ignore_activity(_activity: AgentActivity) -> None:
    """An `ActivitySink` that drops everything."""


class Agent(Protocol):
    """A coding agent: runs one prompt to completion, a timeout, or an error."""

    @property
    def name(self) -> str:
        """The adapter's name (`claude-code`, `factory-droid`, `command`, `builtin`)."""
        ...

    @property
    def supports_sessions(self) -> bool:
        """True when `AgentRequest.session_id` is honoured (the CLI can resume)."""
        ...

    async def run(self, request: AgentRequest, on_activity: ActivitySink) -> AgentResult:
        """Run the prompt; never raises for agent failures (they are `AgentResult`s)."""
        ...


class StreamParser(Protocol):
    """Reads an agent's structured stdout, one line at a time."""

    def feed(self, line: str) -> list[AgentActivity]:
        """Take one line; answer the activity it reports (malformed lines are skipped)."""
        ...

    def finish(self, *, exit_code: int, stderr_tail: str) -> AgentResult:
        """The result once the process has exited."""
        ...

    def partial(self) -> str:
        """The output so far (for a timeout)."""
        ...
