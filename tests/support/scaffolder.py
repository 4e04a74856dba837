"""The scaffolder tests' fakes: projects, progress, a scaffold message."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.contracts import BaseMessage, ProgressEvent, ProjectStatus, ScaffolderMessage
from shared.git.naming import repo_name


@dataclass
class StatusCall:
    """One call of set_project_status."""

    project_id: str
    status: ProjectStatus
    repository_url: str | None
    error: str | None


@dataclass
class FakeProjects:
    """Records status changes and answers the current status, like the API would."""

    statuses: dict[str, ProjectStatus] = field(default_factory=dict)
    calls: list[StatusCall] = field(default_factory=list)
    fail_with: Exception | None = None

    async def set_project_status(
        self,
        project_id: str,
        status: ProjectStatus,
        *,
        repository_url: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record the change (or raise `fail_with`, as an unreachable API would)."""
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(StatusCall(project_id, status, repository_url, error))
        self.statuses[project_id] = status

    async def get_project_status(self, project_id: str) -> ProjectStatus | None:
        """The last status set (or seeded)."""
        return self.statuses.get(project_id)


@dataclass
class FakeProgress:
    """Records progress events."""

    events: list[ProgressEvent] = field(default_factory=list)

    async def report(self, message: BaseMessage, event: ProgressEvent) -> None:
        """Record one event."""
        self.events.append(event)

    @property
    def types(self) -> list[str]:
        """The event types in order."""
        return [event.type for event in self.events]


REPO = f"projects/{repo_name('p1', 'Demo Shop')}"
"""The repository of `make_message`'s default project."""


def make_message(**overrides: object) -> ScaffolderMessage:
    """A scaffold request for project p1 ("Demo Shop") into its own repository under `projects`,
    modules backend and telegram; another project id or name gets its own repository."""
    fields: dict[str, object] = {
        "project_id": "p1",
        "project_name": "Demo Shop",
        "modules": ["backend", "telegram"],
    }
    fields.update(overrides)
    own = repo_name(str(fields["project_id"]), str(fields["project_name"]))
    fields.setdefault("repo_full_name", f"projects/{own}")
    return ScaffolderMessage.model_validate(fields)
