"""Settings every actor shares, read from the environment (prefix `ORCHESTRATOR_`) and `.env`.

Built once in `main()` and handed down; tests construct `Settings(...)` directly. Nested
sections use `__`, e.g. `ORCHESTRATOR_API__PORT=8080`. `REDIS_URL` and `DATABASE_URL` are
also read without the prefix, as most deployments set them.

This is the root of the settings tree; each actor's section (a `Section`, e.g.
`ORCHESTRATOR_INFRA__HEALTH_TIMEOUT_S`) is defined beside its actor and joined to the root
by `services/settings.py` (`SystemSettings`). An actor reads its section with
`<Its>Settings.of(settings)`: the tree's section with what it takes from the system (data
directory, API), or the section's defaults under a bare `Settings` (tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.git.settings import GitSettings
from shared.logs import LogFormat, level_number
from shared.observability.metrics import MetricsSettings

__all__ = ["ApiSettings", "SecretsSettings", "Section", "Settings", "TaskDeadlines"]


class TaskDeadlines(BaseModel):
    """How long a task of each type may take from its creation, in seconds: the API stamps
    each new task's `deadline_at` with it, and the scheduler fails a task still queued or
    running past it. E.g. `ORCHESTRATOR_API__TASK_DEADLINES__ENGINEERING_S=7200`."""

    engineering_s: float = Field(default=10_800.0, gt=0)
    deploy_s: float = Field(default=3_600.0, gt=0)
    scaffolding_s: float = Field(default=3_600.0, gt=0)

    def of(self, task_type: str) -> float:
        """The allowance of a task type (its value, e.g. `engineering`)."""
        value: float = getattr(self, f"{task_type}_s")
        return value


class ConsoleSettings(BaseModel):
    """The web console the API serves at `/console/` (`docs/console.md`)."""

    session_ttl_s: int = Field(default=12 * 3600, ge=60)
    """How long a console sign-in lasts; after it, the browser is asked to sign in again."""
    link_ttl_s: int = Field(default=600, ge=10)
    """How long a one-time sign-in link (`orchestrator console`) may wait to be opened."""


class ApiSettings(BaseModel):
    """Where the REST API listens and how clients reach it."""

    host: str = "127.0.0.1"
    port: int = 8800
    url: str | None = None
    """Base URL clients use; defaults to http://host:port."""
    key: SecretStr | None = None
    """The credential this process sends to the API (an API key or a per-user token)."""
    service_key: SecretStr | None = None
    """A service-scope key the API registers (hashed) at start; embedded mode shares one."""
    relay_enabled: bool = True
    """Run the outbox relay inside the API process (publishes queued messages to Redis)."""
    relay_poll_s: float = 0.5
    """How often the outbox relay looks for unpublished rows when nothing wakes it."""
    task_deadlines: TaskDeadlines = Field(default_factory=TaskDeadlines)
    """Each new task's deadline, by type."""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """The largest request body the API reads; a larger one is refused with 413."""
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    """The web console's sessions and sign-in links."""
    monthly_budget_usd: float | None = Field(default=None, ge=0)
    """Every user's cap on a calendar month's agent spend in USD, unless an admin set the
    user's own (`PUT /api/users/{id}/budget`); None: no cap. Engineering tasks are refused
    at creation once it is reached."""
    task_hold_usd: float | None = Field(default=None, gt=0)
    """What a task holds of its user's monthly cap while it runs (so concurrent tasks cannot
    together pass the cap); None: all that remains, i.e. a capped user's tasks run their
    agents one at a time. Set it to the workers' per-task cap to let them run side by side."""
    git: GitSettings = Field(default_factory=GitSettings)
    """Where the API reads projects' repositories (the console's commits and diffs): the
    same provider the orchestrator writes to, e.g. `ORCHESTRATOR_API__GIT__PROVIDER=github`;
    the default is the embedded mode's local repositories under `<data_dir>/repos`."""
    import_roots: list[Path] = Field(default_factory=list)
    """Local directories whose repositories may be imported by path (`file://`); empty:
    only network git URLs. The system's own repositories are never importable. Imports go
    to the API's git provider (`git` below, the one the scaffolder writes to)."""
    import_timeout_s: float = Field(default=300.0, gt=0)
    """Deadline of each git operation of an import (clone, push)."""
    auth_cache_ttl_s: float = Field(default=5.0, ge=0)
    """How long an API process trusts a credential it has looked up without looking again; a
    revocation through that process applies at once, one through another process within this
    time. 0: look every credential up on every request."""

    @property
    def base_url(self) -> str:
        """The URL clients use."""
        return self.url or f"http://{self.host}:{self.port}"


class SecretsSettings(BaseModel):
    """How project secrets are encrypted at rest (see `shared.secret_box`, docs/secrets.md)."""

    keys: list[str] = Field(default_factory=list)
    """References (`env:NAME` / `file:PATH`) to the Fernet keys, newest first: the first
    encrypts, each decrypts. Empty: a key generated under `<data_dir>/secrets/` (mode 0600).
    E.g. `ORCHESTRATOR_SECRETS__KEYS='["env:SECRETS_KEY"]'`."""


SHUTDOWN_GRACE_S = 10.0
"""The default of `Settings.shutdown_grace_s`."""


class Settings(BaseSettings):
    """Settings of the whole system; every field has an embedded default."""

    model_config = SettingsConfigDict(
        env_prefix="ORCHESTRATOR_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    data_dir: Path = Path("var")
    """Where the embedded mode keeps its database, Redis files, repositories and workspaces."""
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ORCHESTRATOR_REDIS_URL", "REDIS_URL")
    )
    """A Redis server to use; when unset, the embedded mode starts a private one."""
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ORCHESTRATOR_DATABASE_URL", "DATABASE_URL"),
    )
    """SQLAlchemy URL; when unset, SQLite in the data directory."""
    log_format: LogFormat = "auto"
    """`console` for people, `json` for production (one JSON object a line), `auto` (the
    default): JSON when stderr is not a terminal."""
    log_level: str = "INFO"
    """DEBUG, INFO, WARNING or ERROR."""
    api: ApiSettings = Field(default_factory=ApiSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    """Encryption of project secrets at rest (API and infra-service share the keys)."""
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    """This process's Prometheus endpoint (`ORCHESTRATOR_METRICS__PORT`, `__HOST`,
    `__ENABLED`)."""
    shutdown_grace_s: float = Field(default=SHUTDOWN_GRACE_S, ge=0)
    """How long a stopping actor lets its in-flight handlers finish (`shared.actor.run_parts`)
    before cancelling them (their messages are then redelivered)."""
    local_user_telegram_id: int = 1
    """The embedded mode's local admin user (the one `orchestrator` commands act as)."""
    local_ports: tuple[int, int] = (10_000, 10_999)
    """The ports the embedded mode's deploy server `local` hands to projects (first, last),
    e.g. `ORCHESTRATOR_LOCAL_PORTS='[20000, 20099]'` beside another system on this machine."""

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level_number(value)  # a clear error naming the allowed levels
        return value.strip().upper()

    @field_validator("local_ports")
    @classmethod
    def _port_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        first, last = value
        if not 1024 <= first <= last <= 65_535:
            raise ValueError(
                "must be two ports, the first and the last, with 1024 <= first <= last <= "
                f"65535; got {first} and {last}"
            )
        return value

    @property
    def effective_database_url(self) -> str:
        """The configured database URL, or the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'orchestrator.db').resolve()}"


class Section(BaseModel):
    """One actor's section of the settings tree (`ORCHESTRATOR_<SECTION>__<FIELD>`)."""

    model_config = ConfigDict(extra="ignore")

    section: ClassVar[str]
    """The section's name in the tree (and in its variables' names)."""

    def within(self, system: Settings) -> Self:
        """This section completed from the system's settings (e.g. its data directory);
        fields set explicitly are kept. The default takes nothing."""
        return self

    @classmethod
    def of(cls, system: Settings) -> Self:
        """The actor's effective settings: the tree's section (the defaults under a bare
        `Settings`), completed from the system (`within`)."""
        own = getattr(system, cls.section, None)
        return (own if isinstance(own, cls) else cls()).within(system)
