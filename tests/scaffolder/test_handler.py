"""handle_scaffolder_message with real git remotes (bare repositories in tmp_path)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from services.scaffolder.handlers import ScaffolderDeps, handle_scaffolder_message, is_transient
from shared.contracts import ProjectStatus
from shared.git import (
    GitCommandError,
    GitTimeoutError,
    LocalGitProvider,
    ProviderError,
    RemoteRepo,
    clone,
    commit_all,
    init_worktree,
    push,
    run_git,
)
from tests.support.scaffolder import REPO, FakeProgress, FakeProjects, make_message


async def test_scaffolds_pushes_and_reports(
    deps: ScaffolderDeps,
    provider: LocalGitProvider,
    projects: FakeProjects,
    progress: FakeProgress,
    tmp_path: Path,
) -> None:
    """A new project gets a repository with both modules on main, scaffolding → scaffolded."""
    message = make_message()
    result = await handle_scaffolder_message(message, deps)
    assert (result.status, result.error, result.request_id) == ("success", None, message.request_id)
    head = await provider.head_of(REPO, "main")
    assert head is not None
    files = await provider.files_changed(REPO, head)
    for expected in ("README.md", "backend/app/main.py", "backend/Dockerfile", "backend/Makefile"):
        assert expected in files
    assert "telegram/bot/handlers.py" in files
    url = provider.path_of(REPO).as_uri()
    assert [(c.status, c.repository_url) for c in projects.calls] == [
        (ProjectStatus.SCAFFOLDING, None),
        (ProjectStatus.SCAFFOLDED, url),
    ]
    assert progress.types[0] == "started"
    assert progress.types[-1] == "completed"
    assert set(progress.types[1:-1]) == {"progress"}
    assert all(event.request_id == message.request_id for event in progress.events)
    copy = tmp_path / "copy"
    await clone(url, copy, branch="main")
    assert "Demo Shop" in (copy / "README.md").read_text()
    assert not list(deps.settings.work_dir.iterdir())  # working copies are removed


async def test_redelivery_leaves_the_repository_alone(
    deps: ScaffolderDeps, provider: LocalGitProvider, projects: FakeProjects, progress: FakeProgress
) -> None:
    """The same message twice: one commit, the second succeeds without any status change."""
    message = make_message()
    await handle_scaffolder_message(message, deps)
    head = await provider.head_of(REPO, "main")
    calls_before = len(projects.calls)
    progress.events.clear()
    again = await handle_scaffolder_message(message, deps)
    assert again.status == "success"
    assert await provider.head_of(REPO, "main") == head
    assert len(projects.calls) == calls_before
    assert projects.statuses["p1"] == ProjectStatus.SCAFFOLDED
    assert progress.types == ["started", "completed"]
    assert "already scaffolded" in (progress.events[-1].message or "")


async def test_redelivery_never_moves_a_project_back(
    deps: ScaffolderDeps, projects: FakeProjects
) -> None:
    """A redelivery after the project moved on (developing) changes no status."""
    await handle_scaffolder_message(make_message(), deps)
    projects.statuses["p1"] = ProjectStatus.DEVELOPING
    calls_before = len(projects.calls)
    result = await handle_scaffolder_message(make_message(), deps)
    assert result.status == "success"
    assert len(projects.calls) == calls_before


async def test_a_repository_with_history_is_not_clobbered(
    deps: ScaffolderDeps, provider: LocalGitProvider, projects: FakeProjects, tmp_path: Path
) -> None:
    """An existing repository with commits keeps its head; the project still ends scaffolded."""
    repo = await provider.create_repo(REPO)
    work = tmp_path / "mine"
    await init_worktree(work)
    (work / "OWN.md").write_text("mine\n")
    own = await commit_all(work, "my own history")
    await push(work, repo.clone_url, "main")
    result = await handle_scaffolder_message(make_message(), deps)
    assert result.status == "success"
    assert await provider.head_of(REPO, "main") == own
    assert [c.status for c in projects.calls] == [
        ProjectStatus.SCAFFOLDING,
        ProjectStatus.SCAFFOLDED,
    ]


async def test_another_projects_repository_is_never_written_nor_recorded(
    deps: ScaffolderDeps, provider: LocalGitProvider, projects: FakeProjects
) -> None:
    """A message naming another project's (scaffolded) repository fails before any git call:
    that repository keeps its head, and no URL of it is recorded on this project."""
    victim = make_message(project_id="victim-0001", project_name="victim")
    assert (await handle_scaffolder_message(victim, deps)).status == "success"
    head = await provider.head_of(victim.repo_full_name, "main")
    projects.calls.clear()
    forged = make_message(project_id="p1", repo_full_name=victim.repo_full_name)
    result = await handle_scaffolder_message(forged, deps)
    assert result.status == "failed"
    assert "is not this project's own" in (result.error or "")
    assert await provider.head_of(victim.repo_full_name, "main") == head
    assert [(c.project_id, c.status, c.repository_url) for c in projects.calls] == [
        ("p1", ProjectStatus.FAILED, None)
    ]


async def test_without_a_reader_an_existing_scaffold_is_marked_scaffolded(
    deps: ScaffolderDeps, projects: FakeProjects
) -> None:
    """With no status reader, a redelivery sets scaffolded (with the URL) and nothing else."""
    await handle_scaffolder_message(make_message(), deps)
    projects.calls.clear()
    blind = dataclasses.replace(deps, project_reader=None)
    assert (await handle_scaffolder_message(make_message(), blind)).status == "success"
    assert [c.status for c in projects.calls] == [ProjectStatus.SCAFFOLDED]
    assert projects.calls[0].repository_url is not None


async def test_concurrent_deliveries_make_one_scaffold(
    deps: ScaffolderDeps, provider: LocalGitProvider
) -> None:
    """Two deliveries at once both succeed and the remote has exactly one commit."""
    first, second = await asyncio.gather(
        handle_scaffolder_message(make_message(), deps),
        handle_scaffolder_message(make_message(), deps),
    )
    assert (first.status, second.status) == ("success", "success")
    head = await provider.head_of(REPO, "main")
    assert head is not None
    _, count, _ = await run_git("rev-list", "--count", head, cwd=provider.path_of(REPO))
    assert count.strip() == "1"


async def test_unknown_module_fails_the_project(
    deps: ScaffolderDeps, provider: LocalGitProvider, projects: FakeProjects, progress: FakeProgress
) -> None:
    """A module without a template fails the project with the reason; no repository is made."""
    result = await handle_scaffolder_message(make_message(modules=["backend", "mobile"]), deps)
    assert result.status == "failed"
    assert result.error is not None
    assert "mobile" in result.error
    assert await provider.get_repo(REPO) is None
    assert projects.calls[-1].status == ProjectStatus.FAILED
    assert projects.calls[-1].error == result.error
    assert progress.types == ["started", "failed"]
    assert progress.events[-1].error == result.error


async def test_bad_repository_name_fails_the_project(
    deps: ScaffolderDeps, projects: FakeProjects
) -> None:
    """A repository name that is not owner/name fails with the reason."""
    result = await handle_scaffolder_message(make_message(repo_full_name="../etc"), deps)
    assert result.status == "failed"
    assert "owner/name" in (result.error or "")
    assert projects.statuses["p1"] == ProjectStatus.FAILED


class _UnreachableRemote(LocalGitProvider):
    """A provider whose clone URL points nowhere, so the push fails."""

    async def create_repo(self, full_name: str, *, description: str | None = None) -> RemoteRepo:
        repo = await super().create_repo(full_name, description=description)
        missing = (self.root / "missing.git").as_uri()
        return dataclasses.replace(repo, clone_url=missing)


async def test_a_failed_push_fails_the_project(
    deps: ScaffolderDeps, projects: FakeProjects, progress: FakeProgress
) -> None:
    """A push git cannot do fails the project with git's reason and removes the working copy."""
    broken = dataclasses.replace(deps, git=_UnreachableRemote(deps.settings.data_dir / "repos"))
    result = await handle_scaffolder_message(make_message(), broken)
    assert result.status == "failed"
    assert "git push failed" in (result.error or "")
    assert projects.statuses["p1"] == ProjectStatus.FAILED
    assert progress.types[-1] == "failed"
    assert not list(deps.settings.work_dir.iterdir())


class _HidesHeadOnce(LocalGitProvider):
    """Pretends the branch is empty the first time: another delivery pushes meanwhile."""

    hidden = False

    async def head_of(self, full_name: str, branch: str) -> str | None:
        if not self.hidden:
            self.hidden = True
            return None
        return await super().head_of(full_name, branch)


async def test_losing_the_push_race_is_success(
    deps: ScaffolderDeps, provider: LocalGitProvider, projects: FakeProjects
) -> None:
    """When another delivery pushed first, our rejected push ends as already scaffolded."""
    await handle_scaffolder_message(make_message(), deps)
    head = await provider.head_of(REPO, "main")
    projects.statuses["p1"] = ProjectStatus.SCAFFOLDING
    racing = dataclasses.replace(deps, git=_HidesHeadOnce(provider.root))
    result = await handle_scaffolder_message(make_message(), racing)
    assert result.status == "success"
    assert await provider.head_of(REPO, "main") == head
    assert projects.statuses["p1"] == ProjectStatus.SCAFFOLDED


async def test_an_unreachable_api_propagates_for_a_retry(
    deps: ScaffolderDeps, provider: LocalGitProvider, projects: FakeProjects
) -> None:
    """An API failure is raised (the bus retries), not turned into a failed project."""
    projects.fail_with = ConnectionError("api down")
    with pytest.raises(ConnectionError):
        await handle_scaffolder_message(make_message(), deps)
    assert await provider.head_of(REPO, "main") is None


class _HostDown(LocalGitProvider):
    """A git host that answers 503 to every lookup."""

    async def get_repo(self, full_name: str) -> RemoteRepo | None:
        raise ProviderError("GitHub API get: HTTP 503 Server Error", status_code=503)


async def test_a_host_outage_is_retried_then_fails_on_the_last_attempt(
    deps: ScaffolderDeps, projects: FakeProjects, progress: FakeProgress
) -> None:
    """A 503 from the git host raises for a retry; on the final attempt it fails the project."""
    down = dataclasses.replace(deps, git=_HostDown(deps.settings.data_dir / "repos"))
    with pytest.raises(ProviderError):
        await handle_scaffolder_message(make_message(), down, final_attempt=False)
    assert projects.statuses["p1"] == ProjectStatus.DRAFT
    result = await handle_scaffolder_message(make_message(), down, final_attempt=True)
    assert result.status == "failed"
    assert "503" in (result.error or "")
    assert [call.status for call in projects.calls] == [ProjectStatus.FAILED]


def test_which_failures_are_transient() -> None:
    """Timeouts, transport failures, 429 and 5xx are transient; 4xx and git refusals are not."""
    assert is_transient(GitTimeoutError("slow"))
    assert is_transient(ProviderError("down", status_code=None))
    assert is_transient(ProviderError("busy", status_code=429))
    assert is_transient(ProviderError("down", status_code=502))
    assert not is_transient(ProviderError("no", status_code=403))
    assert not is_transient(GitCommandError("push", 1, "denied"))


async def test_an_emptied_repository_of_a_scaffolded_project_is_scaffolded_again(
    deps: ScaffolderDeps, provider: LocalGitProvider, projects: FakeProjects
) -> None:
    """A project marked scaffolded whose remote is empty gets the scaffold, with no step back."""
    projects.statuses["p1"] = ProjectStatus.SCAFFOLDED
    result = await handle_scaffolder_message(make_message(), deps)
    assert result.status == "success"
    assert await provider.head_of(REPO, "main") is not None
    assert [call.status for call in projects.calls] == [ProjectStatus.SCAFFOLDED]
