"""Fixtures of the scaffolder tests: recording fakes of the API and progress, real git."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.scaffolder.handlers import ScaffolderDeps
from services.scaffolder.render import CopierRenderer
from services.scaffolder.settings import ScaffolderSettings
from shared.contracts import ProjectStatus
from shared.git import LocalGitProvider
from tests.support.scaffolder import FakeProgress, FakeProjects


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
