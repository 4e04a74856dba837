"""Project DTOs of the REST API."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict

__all__ = ["ProjectCreate", "ProjectDTO", "ProjectStatus"]


class ProjectStatus(str, Enum):
    """Lifecycle of a project."""

    DRAFT = "draft"
    SCAFFOLDING = "scaffolding"
    SCAFFOLDED = "scaffolded"
    DEVELOPING = "developing"
    TESTING = "testing"
    DEPLOYING = "deploying"
    ACTIVE = "active"
    FAILED = "failed"
    ARCHIVED = "archived"


class ProjectCreate(BaseModel):
    """Create project request."""

    name: str
    description: str | None = None


class ProjectDTO(BaseModel):
    """Project response."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str | None = None
    status: ProjectStatus
    repository_url: str | None = None
    owner_id: int | None = None
