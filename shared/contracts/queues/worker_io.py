"""`worker:{id}:input` / `worker:{id}:output`: the conversation with a worker's agent."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["AgentRunRecord", "AgentToolCall", "WorkerInputMessage", "WorkerOutputMessage"]

ANSWER_CHARS = 20_000
"""The longest final answer a run record keeps (a longer one is cut, marked `truncated`)."""


class WorkerInputMessage(BaseModel):
    """Message to worker agent."""

    request_id: str
    prompt: str
    timeout: int = 1800


class AgentToolCall(BaseModel):
    """One tool call of an agent run: the tool, its file or command, its outcome."""

    name: str
    target: str = ""
    outcome: str = "unknown"
    """`ok`, `error: <detail>`, `exit <code>` or `unknown`."""


class AgentRunRecord(BaseModel):
    """What one agent run did and cost (an addition to the specification: see
    `shared.contracts`, correction 4). Secrets are masked before it is written."""

    agent: str
    agent_version: str | None = None
    model: str | None = None
    status: Literal["success", "error", "timeout"]
    prompt_chars: int
    answer: str | None = None
    error: str | None = None
    tools: list[AgentToolCall] = Field(default_factory=list)
    tools_dropped: int = 0
    """Tool calls left out of `tools` (the transcript is bounded)."""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    """By the worker's price table (`agents/prices.json`): the figure budget caps count."""
    duration_ms: int = 0
    exit_code: int | None = None
    session_id: str | None = None


class WorkerOutputMessage(BaseModel):
    """Response from worker agent."""

    request_id: str
    status: Literal["success", "error", "timeout"]
    response: str | None = None
    error: str | None = None
    duration_ms: int
    run: AgentRunRecord | None = None
    """The run record of an agent run (None for directives and older wrappers)."""
