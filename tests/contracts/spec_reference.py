"""The specification's own classes (`spec/contracts.md`), as written there, for conformance tests.

Only one change: `datetime.utcnow` (deprecated, and a warning is an error in this suite) is
replaced by a function that returns the same naive UTC value.
"""
# ruff: noqa: UP042

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ProjectStatus(str, Enum):
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
    name: str
    description: str | None = None


class ProjectDTO(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str | None = None
    status: ProjectStatus
    repository_url: str | None = None
    owner_id: int | None = None


class TaskStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskType(str, Enum):
    ENGINEERING = "engineering"
    DEPLOY = "deploy"
    SCAFFOLDING = "scaffolding"


class TaskCreate(BaseModel):
    project_id: str
    type: TaskType
    spec: str | None = None


class TaskDTO(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    project_id: str
    type: TaskType
    status: TaskStatus
    spec: str | None = None
    result: dict | None = None  # type: ignore[type-arg]  # the specification's bare dict
    created_at: datetime
    updated_at: datetime | None = None


class UserDTO(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    telegram_id: int
    is_admin: bool = False


class QueueMeta(BaseModel):
    version: Literal["1"] = "1"
    correlation_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: datetime = Field(default_factory=_utcnow)


class BaseMessage(QueueMeta):
    request_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    callback_stream: str | None = None


class BaseResult(BaseModel):
    request_id: str
    status: Literal["success", "failed", "error"]
    error: str | None = None
    duration_ms: int | None = None


class EngineeringMessage(BaseMessage):
    task_id: str
    project_id: str
    user_id: int


class EngineeringResult(BaseResult):
    files_changed: list[str] | None = None
    commit_sha: str | None = None
    branch: str | None = None


class DeployMessage(BaseMessage):
    task_id: str
    project_id: str
    user_id: int


class DeployResult(BaseResult):
    deployed_url: str | None = None
    server_ip: str | None = None
    port: int | None = None


class ScaffolderMessage(BaseMessage):
    project_id: str
    repo_full_name: str
    project_name: str
    modules: list[str]


class WorkerConfig(BaseModel):
    name: str
    agent: Literal["claude-code", "factory-droid"]
    capabilities: list[str]
    env_vars: dict[str, str]
    mount_session_volume: bool = False


class CreateWorkerCommand(QueueMeta):
    command: Literal["create"] = "create"
    request_id: str
    config: WorkerConfig
    context: dict[str, str] = {}


class SendMessageCommand(QueueMeta):
    command: Literal["send_message"] = "send_message"
    request_id: str
    worker_id: str
    message: str
    timeout: int = 1800


class DeleteWorkerCommand(QueueMeta):
    command: Literal["delete"] = "delete"
    request_id: str
    worker_id: str


class CreateWorkerResponse(BaseModel):
    request_id: str
    success: bool
    worker_id: str | None = None
    error: str | None = None


class SendMessageResponse(BaseModel):
    request_id: str
    success: bool
    response: str | None = None
    error: str | None = None


class DeleteWorkerResponse(BaseModel):
    request_id: str
    success: bool
    error: str | None = None


class WorkerInputMessage(BaseModel):
    request_id: str
    prompt: str
    timeout: int = 1800


class WorkerOutputMessage(BaseModel):
    request_id: str
    status: Literal["success", "error", "timeout"]
    response: str | None = None
    error: str | None = None
    duration_ms: int


class ProvisionerMessage(BaseMessage):
    server_handle: str
    force_reinstall: bool = False
    is_recovery: bool = False


class ProvisionerResult(BaseResult):
    server_handle: str
    server_ip: str | None = None
    services_redeployed: int = 0
    errors: list[str] | None = None


class AnsibleDeployMessage(BaseMessage):
    job_type: Literal["deploy"] = "deploy"
    project_id: str
    project_name: str
    repo_full_name: str
    server_ip: str
    port: int
    modules: list[str] | None = None
    github_token_ref: str
    secrets_ref: str


class AnsibleDeployResult(BaseResult):
    deployed_url: str | None = None
    server_ip: str | None = None
    port: int | None = None
    stdout: str | None = None
    stderr: str | None = None
    exit_code: int | None = None


class ProgressEvent(BaseModel):
    type: Literal["started", "progress", "completed", "failed"]
    request_id: str
    task_id: str | None = None
    timestamp: datetime = Field(default_factory=_utcnow)
    message: str | None = None
    progress_pct: int | None = None
    current_step: str | None = None
    error: str | None = None


SEED_CLASSES: tuple[type[BaseModel], ...] = (
    ProjectCreate,
    ProjectDTO,
    TaskCreate,
    TaskDTO,
    UserDTO,
    QueueMeta,
    BaseMessage,
    BaseResult,
    EngineeringMessage,
    EngineeringResult,
    DeployMessage,
    DeployResult,
    ScaffolderMessage,
    WorkerConfig,
    CreateWorkerCommand,
    SendMessageCommand,
    DeleteWorkerCommand,
    CreateWorkerResponse,
    SendMessageResponse,
    DeleteWorkerResponse,
    WorkerInputMessage,
    WorkerOutputMessage,
    ProvisionerMessage,
    ProvisionerResult,
    AnsibleDeployMessage,
    AnsibleDeployResult,
    ProgressEvent,
)
SEED_ENUMS: tuple[type[Enum], ...] = (ProjectStatus, TaskStatus, TaskType)
