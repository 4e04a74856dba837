"""Base types of every queue message: `QueueMeta`, `BaseMessage`, `BaseResult`."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field

from shared.contracts._types import UtcDatetime, utc_now

__all__ = ["BaseMessage", "BaseResult", "QueueMeta", "new_id"]


def new_id() -> str:
    """A fresh random identifier (UUID4 as a string)."""
    return str(uuid.uuid4())


class QueueMeta(BaseModel):
    """Metadata for all queue messages."""

    version: Literal["1"] = "1"
    correlation_id: str = Field(default_factory=new_id)
    timestamp: UtcDatetime = Field(default_factory=utc_now)


class BaseMessage(QueueMeta):
    """Base class for queue messages."""

    request_id: str = Field(default_factory=new_id)
    callback_stream: str | None = None


class BaseResult(BaseModel):
    """Base result for async operations."""

    request_id: str
    status: Literal["success", "failed", "error"]
    error: str | None = None
    duration_ms: int | None = None
