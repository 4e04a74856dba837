"""`ProgressEvent`: task progress on the stream `task_progress:{task_id}`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from shared.contracts._types import UtcDatetime, utc_now

__all__ = ["ProgressEvent", "ProgressEventType"]

ProgressEventType = Literal["started", "progress", "completed", "failed"]


class ProgressEvent(BaseModel):
    """Task progress notification."""

    type: ProgressEventType
    request_id: str
    task_id: str | None = None
    timestamp: UtcDatetime = Field(default_factory=utc_now)
    message: str | None = None
    progress_pct: int | None = None
    current_step: str | None = None
    error: str | None = None

    @property
    def is_terminal(self) -> bool:
        """True for the last event of a task (`completed` or `failed`)."""
        return self.type in ("completed", "failed")
