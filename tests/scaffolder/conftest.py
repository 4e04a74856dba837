"""Fixtures of the scaffolder tests: recording fakes of the API and progress, real git."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.scaffolder.handlers import ScaffolderDeps
from services.scaffolder.render import CopierRenderer
from services.scaffolder.settings import ScaffolderSettings
from shared.contracts import BaseMessage, ProgressEvent, ProjectStatus, ScaffolderMessage
from shared.git import LocalGitProvider
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


@pytest.fixture
def settings(tmp_path: Path) -> ScaffolderSettings:
    """Scaffolder settings under tmp_path (local bare repositories in tmp_path/repos)."""
    return ScaffolderSettings(data_dir=tmp_path)


@pytest.fixture
def provider(settings: ScaffolderSettings) -> LocalGitProvider:
    """The local git provider the settings name."""
    return LocalGitProvider(settings.data_dir / "repos")


@pytest.fixture
def projects() -> FakeProjects:
    """A project API fake with project p1 in draft."""
    return FakeProjects(statuses={"p1": ProjectStatus.DRAFT})


@pytest.fixture
def progress() -> FakeProgress:
    """A progress recorder."""
    return FakeProgress()


@pytest.fixture(scope="session")
def renderer() -> Iterator[CopierRenderer]:
    """One renderer child process for the session (copier imports once)."""
    shared = CopierRenderer(timeout_s=120)
    try:
        yield shared
    finally:
        shared.close()


@pytest.fixture
def deps(
    settings: ScaffolderSettings,
    provider: LocalGitProvider,
    projects: FakeProjects,
    progress: FakeProgress,
    renderer: CopierRenderer,
) -> ScaffolderDeps:
    """Handler dependencies with real git, the real renderer and recording fakes."""
    return ScaffolderDeps(
        settings=settings,
        git=provider,
        projects=projects,
        progress=progress,
        project_reader=projects,
        renderer=renderer,
    )


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
