"""Task DTOs of the REST API."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared.contracts._types import UtcDatetime

__all__ = ["TaskCreate", "TaskDTO", "TaskStatus", "TaskType"]


class TaskStatus(str, Enum):
    """Lifecycle of a task."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskType(str, Enum):
    """What a task does."""

    ENGINEERING = "engineering"
    DEPLOY = "deploy"
    SCAFFOLDING = "scaffolding"


class TaskCreate(BaseModel):
    """Create task request."""

    project_id: str
    type: TaskType
    spec: str | None = None


class TaskDTO(BaseModel):
    """Task response."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    project_id: str
    type: TaskType
    status: TaskStatus
    spec: str | None = None
    result: dict[str, Any] | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime | None = None
