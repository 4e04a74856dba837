"""`worker:{id}:input` / `worker:{id}:output`: the conversation with a worker's agent."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

__all__ = ["WorkerInputMessage", "WorkerOutputMessage"]


class WorkerInputMessage(BaseModel):
    """Message to worker agent."""

    request_id: str
    prompt: str
    timeout: int = 1800


class WorkerOutputMessage(BaseModel):
    """Response from worker agent."""

    request_id: str
    status: Literal["success", "error", "timeout"]
    response: str | None = None
    error: str | None = None
    duration_ms: int
