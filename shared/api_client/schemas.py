"""Bodies of the REST API beyond the specification's DTOs (which stay in `shared.contracts`).

Shared by the API (which serves them) and the typed client (which parses them). Every string
of a request body is one of the bounded types of `shared.api_client.text`; the request
bodies of the specification's `ProjectCreate` and `TaskCreate` are API-side subclasses here
(`ProjectCreateBody`, `TaskCreateBody`) that add those limits without changing the contract.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from shared.api_client.text import (
    FreeText,
    Identifier,
    JsonObject,
    Label,
    Reference,
    Spec,
    Url,
)
from shared.contracts import (
    ProjectCreate,
    ProjectDTO,
    ProjectStatus,
    TaskCreate,
    TaskDTO,
    TaskStatus,
)
from shared.contracts._types import UtcDatetime

__all__ = [
    "MODULES",
    "PROJECT_BACK_STATUSES",
    "SECRET_NAME_PATTERN",
    "SECRET_VALUE_MAX",
    "AgentRunCreate",
    "AgentRunDTO",
    "AgentToolCallBody",
    "ApiKeyCreate",
    "ApiKeyCreated",
    "ApiKeyDTO",
    "BudgetHold",
    "DeployDTO",
    "DeployHealth",
    "DeployHealthReport",
    "DeployKind",
    "DeployOutcome",
    "DeployRecord",
    "ErrorBody",
    "FieldProblem",
    "Health",
    "Page",
    "PortAllocationCreate",
    "PortAllocationDTO",
    "ProjectCreateBody",
    "ProjectImportBody",
    "ProjectModule",
    "ProjectUpdate",
    "ProjectView",
    "RollbackRequest",
    "Scope",
    "SealedSecrets",
    "SecretInfo",
    "SecretValue",
    "ServerCreate",
    "ServerDTO",
    "ServerStatus",
    "ServerUpdate",
    "TaskCreateBody",
    "TaskCreated",
    "TaskSchedule",
    "TaskUpdate",
    "UsageLine",
    "UsageReport",
    "UserBudget",
    "UserBudgetUpdate",
    "UserCreate",
]

T = TypeVar("T")

Scope = Literal["admin", "service", "user"]
"""What a credential may do: everything; act for the system's services; act as one user."""

_PG_INT_MAX = 2**31 - 1
_PG_BIGINT_MAX = 2**63 - 1


class FieldProblem(BaseModel):
    """One invalid field of a request: where it is and what is wrong with it."""

    field: str
    """Dotted location, e.g. `body.name` or `query.limit`."""
    problem: str


class ErrorBody(BaseModel):
    """The one body of every error response (4xx and 5xx)."""

    code: str
    """Machine-readable: `unauthenticated`, `forbidden`, `not_found`, `conflict`,
    `invalid_transition`, `no_free_port`, `validation_error`, `internal`, ..."""
    message: str
    fields: list[FieldProblem] = Field(default_factory=list)


class Page(BaseModel, Generic[T]):
    """One page of a list: the items, the total matching count, and the window asked for."""

    items: list[T]
    total: int
    limit: int
    offset: int


class Health(BaseModel):
    """Answer of `/health` and `/ready`."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


class UserCreate(BaseModel):
    """Create a user (admins only)."""

    telegram_id: int = Field(ge=1, le=_PG_BIGINT_MAX)
    is_admin: bool = False


class ApiKeyCreate(BaseModel):
    """Create an API key (admin: any scope; a service: a `user` token of any user; a user: a
    `user` token for themselves)."""

    name: Label
    scope: Scope = "user"
    user_id: int | None = Field(default=None, ge=1, le=_PG_INT_MAX)
    """The user a `user` (or `admin`) key acts as; required for `user`."""


class ApiKeyDTO(BaseModel):
    """An API key as listed: never its secret."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    scope: Scope
    user_id: int | None = None
    created_at: UtcDatetime
    revoked_at: UtcDatetime | None = None


class ApiKeyCreated(ApiKeyDTO):
    """A freshly created key: the only time its secret is shown."""

    key: str


ProjectModule = Literal["backend", "telegram"]
"""A module of a project: a template of the scaffolder, and what a deploy runs."""
MODULES: tuple[str, ...] = ("backend", "telegram")


def _default_modules() -> list[ProjectModule]:
    return ["backend"]


class ProjectCreateBody(ProjectCreate):
    """`ProjectCreate` as the API accepts it: a one-line name, a bounded description, and
    the project's modules (default `["backend"]`; `telegram` adds the bot)."""

    name: Label
    description: FreeText | None = None
    modules: list[ProjectModule] = Field(
        default_factory=_default_modules, min_length=1, max_length=len(MODULES)
    )

    @field_validator("modules")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class ProjectImportBody(ProjectCreateBody):
    """`POST /api/projects/import`: a project from an existing git repository, whose branches
    are mirrored into the project's own repository (not scaffolded)."""

    repo_url: str = Field(
        min_length=1,
        max_length=2000,
        description=(
            "The source: https/http/ssh/git URL, user@host:path, or an absolute local path "
            "(only inside the API's import roots)."
        ),
    )


class ProjectView(ProjectDTO):
    """`ProjectDTO` as the API returns it, with the project's modules and how many of its
    engineering tasks may run at once (task order, `PATCH` `parallel_tasks`)."""

    modules: list[str] = Field(default_factory=lambda: ["backend"])
    parallel_tasks: int = 1


SECRET_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"  # noqa: S105 - a pattern
"""A secret's name is the environment variable the project reads it from."""
SECRET_VALUE_MAX = 8192


class SecretValue(BaseModel):
    """The body of `PUT /api/projects/{id}/secrets/{NAME}`: the value, one line."""

    value: SecretStr = Field(min_length=1, max_length=SECRET_VALUE_MAX)

    @field_validator("value")
    @classmethod
    def _one_line(cls, value: SecretStr) -> SecretStr:
        plain = value.get_secret_value()
        if any(char in plain for char in "\r\n\0"):
            raise ValueError("must be one line (no line breaks, no NUL)")
        if not plain.strip():
            raise ValueError("must not be blank")
        return value


class SecretInfo(BaseModel):
    """What a read shows of a secret: its name and when it was set, never its value."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    created_at: UtcDatetime
    updated_at: UtcDatetime


class SealedSecrets(BaseModel):
    """A project's secrets as stored, encrypted (service scope, for infra-service's deploy;
    only a holder of the encryption key reads them)."""

    project_id: str
    sealed: dict[str, str]


class ProjectUpdate(BaseModel):
    """Change a project: its status (along the lifecycle), description or repository."""

    status: ProjectStatus | None = None
    description: FreeText | None = None
    repository_url: Url | None = None
    parallel_tasks: int | None = Field(default=None, ge=1, le=100)
    """How many engineering tasks of the project may run at once (default 1: one after the
    other, in creation order)."""


class TaskCreateBody(TaskCreate):
    """`TaskCreate` as the API accepts it: a bounded project id and specification."""

    project_id: Identifier
    spec: Spec | None = None


class TaskCreated(TaskDTO):
    """A created task, with the correlation id its queue message carries."""

    correlation_id: str


class TaskSchedule(TaskDTO):
    """A task as admins and services see it: its `TaskDTO` fields, the correlation id of its
    queue message, its deadline and how often its message was re-driven."""

    correlation_id: str
    deadline_at: UtcDatetime
    """When the task must have ended; the scheduler fails it past this time."""
    redrive_count: int = 0
    """How often its queue message was published again (`POST /api/tasks/{id}/redrive`)."""
    redriven_at: UtcDatetime | None = None
    """When it was last re-driven."""
    released_at: UtcDatetime | None = None
    """When its queue message was written; None while an engineering task waits for its
    turn behind an earlier open task of the project (task order)."""


PROJECT_BACK_STATUSES = frozenset(
    {ProjectStatus.SCAFFOLDED, ProjectStatus.ACTIVE, ProjectStatus.FAILED}
)
"""What a project may go back to when an engineering task ends (`TaskUpdate.project_status`)."""


class TaskUpdate(BaseModel):
    """Change a task (services and admins): its status along the lifecycle, its result, and
    with the task's end, the status its project goes back to."""

    status: TaskStatus | None = None
    result: JsonObject | None = None
    project_status: ProjectStatus | None = None
    """Only with the end of the task (completed, failed or cancelled after this change; the
    engineering flow sends it, whatever the task's type): the status its project goes back
    to (`scaffolded`, `active` or `failed`), in the same transaction. Applied when the
    project is still in work
    (`developing` or `testing`) and no other engineering task of the project is queued or
    running; else the project keeps its status. Each step follows the project lifecycle
    (from `testing` through `developing`)."""

    @field_validator("project_status")
    @classmethod
    def _project_back(cls, value: ProjectStatus | None) -> ProjectStatus | None:
        if value is not None and value not in PROJECT_BACK_STATUSES:
            allowed = ", ".join(sorted(s.value for s in PROJECT_BACK_STATUSES))
            raise ValueError(
                f"a project goes back to one of {allowed} when its task ends, not {value.value!r}"
            )
        return value


class ServerStatus(StrEnum):
    """Lifecycle of a deploy server."""

    PENDING_SETUP = "pending_setup"
    PROVISIONING = "provisioning"
    READY = "ready"
    UNREACHABLE = "unreachable"
    ERROR = "error"
    DECOMMISSIONED = "decommissioned"


class ServerCreate(BaseModel):
    """Register a deploy server. Credentials travel as a reference, never as a secret."""

    handle: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    address: Reference
    ssh_user: Label = "root"
    credentials_ref: Reference | None = None
    """A secret reference (e.g. `env:DEPLOY_SSH_KEY`), resolved only by infra-service."""
    status: ServerStatus = ServerStatus.PENDING_SETUP
    port_range_start: int = Field(default=10_000, ge=1024, le=65_535)
    port_range_end: int = Field(default=10_999, ge=1024, le=65_535)


class ServerUpdate(BaseModel):
    """Change a server's status, address or credential reference."""

    status: ServerStatus | None = None
    address: Reference | None = None
    credentials_ref: Reference | None = None


class ServerDTO(BaseModel):
    """A deploy server; `capacity` is the number of ports it can allocate."""

    model_config = ConfigDict(from_attributes=True)

    handle: str
    address: str
    ssh_user: str
    credentials_ref: str | None = None
    status: ServerStatus
    port_range_start: int
    port_range_end: int
    capacity: int
    allocated: int = 0
    created_at: UtcDatetime


class PortAllocationCreate(BaseModel):
    """Allocate (or find again) the port of a project on a server."""

    project_id: Identifier


class PortAllocationDTO(BaseModel):
    """A project's port on a server; `reused` is true when it existed before the request."""

    model_config = ConfigDict(from_attributes=True)

    server_handle: str
    project_id: str
    port: int
    created_at: UtcDatetime
    reused: bool = False


class DeployOutcome(StrEnum):
    """How a deploy of the history ended (`running` while its flow runs)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


DeployKind = Literal["deploy", "rollback"]
"""A deploy of the base branch's head, or of a commit its task names (`commit <sha>`)."""


class DeployRecord(BaseModel):
    """What the deploy flow records of one deploy task (services and admins): the commit it
    deploys, and later how it ended. Sent again with the same task, it updates the record."""

    sha: str = Field(pattern=r"^[0-9a-f]{40}$", description="The full commit sha deployed.")
    kind: DeployKind = "deploy"
    outcome: DeployOutcome = DeployOutcome.RUNNING
    url: Url | None = None
    previous_serves: bool | None = None
    """After a failed release: whether the previous release still serves."""
    error: FreeText | None = None


class DeployHealth(StrEnum):
    """A release as the scheduler's probes of its health URL see it."""

    UP = "up"
    DOWN = "down"


class DeployHealthReport(BaseModel):
    """What the scheduler reports of a running release (services and admins): its health
    (`up`, or `down` after failed probes in a row) and its supervisor's restart count."""

    health: DeployHealth | None = None
    """None: unchanged."""
    restarts: int | None = Field(default=None, ge=0, le=2**31 - 1)
    """None: unchanged (not known on this server)."""


class DeployDTO(BaseModel):
    """One deploy of a project's history."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: str
    task_id: str
    sha: str
    kind: DeployKind
    outcome: DeployOutcome
    url: str | None = None
    previous_serves: bool | None = None
    error: str | None = None
    created_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    health: DeployHealth | None = None
    """The running release's health as the scheduler last saw it (None: not probed)."""
    health_changed_at: UtcDatetime | None = None
    health_changes: int = 0
    """How many times the release went down or came back up."""
    restarts: int | None = None
    """Restarts of the release by the server's supervisor (None: not known)."""


class RollbackRequest(BaseModel):
    """Redeploy an earlier release: `sha` (a full sha or an unambiguous prefix of one) must
    have been deployed successfully before; without it, the release before the current one."""

    sha: str | None = Field(default=None, max_length=40, pattern=r"^[0-9a-fA-F]{4,40}$")


_INT32 = 2**31 - 1


class AgentToolCallBody(BaseModel):
    """One tool call of a run record: the tool, its file or command, its outcome."""

    name: Label
    target: Annotated[FreeText, Field(max_length=500)] = ""
    outcome: Annotated[FreeText, Field(max_length=500)] = "unknown"


class AgentRunCreate(BaseModel):
    """A run record as the orchestrator posts it (`POST /api/tasks/{id}/runs`): the step of
    the task and the worker's `AgentRunRecord`. `run_key` names the run once (the orchestrator
    sends the request id of the step's command): a second record with the same key for the
    same task is not stored again; the API answers with the first one."""

    run_key: Reference | None = None
    step: Identifier
    agent: Identifier
    agent_version: Reference | None = None
    model: Reference | None = None
    status: Literal["success", "error", "timeout"]
    prompt_chars: int = Field(ge=0, le=_INT32)
    answer: Spec | None = None
    error: Spec | None = None
    tools: list[AgentToolCallBody] = Field(default_factory=list, max_length=500)
    tools_dropped: int = Field(default=0, ge=0, le=_INT32)
    input_tokens: int = Field(default=0, ge=0, le=_INT32)
    output_tokens: int = Field(default=0, ge=0, le=_INT32)
    cache_read_tokens: int = Field(default=0, ge=0, le=_INT32)
    cache_write_tokens: int = Field(default=0, ge=0, le=_INT32)
    cost_usd: float = Field(default=0.0, ge=0, le=1e9, allow_inf_nan=False)
    duration_ms: int = Field(default=0, ge=0, le=_INT32)
    exit_code: int | None = Field(default=None, ge=-(2**31), le=_INT32)


class AgentRunDTO(BaseModel):
    """One recorded agent run of a task."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    task_id: str
    project_id: str
    user_id: int | None = None
    run_key: str | None = None
    step: str
    agent: str
    agent_version: str | None = None
    model: str | None = None
    status: str
    prompt_chars: int
    answer: str | None = None
    error: str | None = None
    tools: list[AgentToolCallBody] = Field(default_factory=list)
    tools_dropped: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    duration_ms: int = 0
    exit_code: int | None = None
    created_at: UtcDatetime


class UsageLine(BaseModel):
    """The runs and cost of one project or task."""

    id: str
    runs: int
    cost_usd: float
    input_tokens: int
    output_tokens: int


class UsageReport(BaseModel):
    """What agent runs cost: all time and this calendar month (UTC), by project and task.

    `monthly_cap_usd` is the user's cap (None: no cap; only when one user is asked for)."""

    user_id: int | None = None
    project_id: str | None = None
    runs: int
    cost_usd: float
    input_tokens: int
    output_tokens: int
    month_start: UtcDatetime
    month_cost_usd: float
    monthly_cap_usd: float | None = None
    by_project: list[UsageLine] = Field(default_factory=list)
    by_task: list[UsageLine] = Field(default_factory=list)
    """The 50 costliest tasks."""


class UserBudgetUpdate(BaseModel):
    """A user's own monthly cap in USD; null: the system's default cap applies."""

    monthly_cap_usd: float | None = Field(ge=0, le=1e9, allow_inf_nan=False)


class BudgetHold(BaseModel):
    """The part of its user's monthly cap a task holds while it runs an agent
    (`POST /api/tasks/{id}/budget-hold`). Without a cap: `monthly_cap_usd` and `hold_usd`
    are None. The worker may spend `hold_usd` (the cap less `month_cost_usd` and
    `held_by_others_usd`, or less when the API holds a fixed share per task)."""

    task_id: str
    user_id: int | None = None
    monthly_cap_usd: float | None = None
    month_cost_usd: float
    """The user's recorded spend of the month."""
    held_by_others_usd: float = 0.0
    """What the user's other open tasks hold and have not spent yet."""
    hold_usd: float | None = None


class UserBudget(BaseModel):
    """A user's monthly cap: their own (if set), the one that applies, this month's spend."""

    user_id: int
    own_cap_usd: float | None = None
    monthly_cap_usd: float | None = None
    month_cost_usd: float
