"""`handle_scaffolder_message`: create the repository, render the templates, push, report.

The handler is a plain coroutine of the message and a frozen `ScaffolderDeps`, so it runs
without the bus. Idempotent: when the repository's default branch already has a commit, the
handler pushes nothing, moves the project to `scaffolded` only if it is not further along,
and succeeds (a redelivery never clobbers a repository nor fails its project).

Failures of the work itself (an unknown module, a template, git, the git host) set the project
to `failed` with the reason and return a failed result. Failures to reach the API, and
transient git-host failures before the final attempt, propagate so the bus retries.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog

from services.scaffolder.errors import ScaffolderError
from services.scaffolder.render import CopierRenderer, check_modules, one_line, render_project
from services.scaffolder.settings import ScaffolderSettings
from shared.contracts import (
    BaseResult,
    ProjectStatus,
    ScaffolderMessage,
)
from shared.git import (
    GitError,
    GitProvider,
    GitTimeoutError,
    ProviderError,
    PushRejectedError,
    commit_all,
    init_worktree,
    push,
    split_full_name,
)
from shared.git.naming import repo_name
from shared.steps import ProgressReporter, report_step

__all__ = [
    "ProgressReporter",
    "ProjectStatusReader",
    "ProjectStatusUpdater",
    "ScaffolderDeps",
    "handle_scaffolder_message",
    "is_transient",
]

log = structlog.get_logger(__name__)

_BEYOND_SCAFFOLDED = frozenset(
    {
        ProjectStatus.DEVELOPING,
        ProjectStatus.TESTING,
        ProjectStatus.DEPLOYING,
        ProjectStatus.ACTIVE,
        ProjectStatus.ARCHIVED,
    }
)
"""Statuses a redelivered scaffold must never move a project away from."""


class ProjectStatusUpdater(Protocol):
    """Sets a project's status through the REST API."""

    async def set_project_status(
        self,
        project_id: str,
        status: ProjectStatus,
        *,
        repository_url: str | None = None,
        error: str | None = None,
    ) -> None:
        """Move the project to `status` (with its repository URL, or the failure's reason)."""
        ...


class ProjectStatusReader(Protocol):
    """Reads a project's current status (optional: guards redeliveries against regressions)."""

    async def get_project_status(self, project_id: str) -> ProjectStatus | None:
        """The project's status, or None when unknown."""
        ...


@dataclass(frozen=True)
class ScaffolderDeps:
    """Everything the handler uses."""

    settings: ScaffolderSettings
    git: GitProvider
    projects: ProjectStatusUpdater
    progress: ProgressReporter
    project_reader: ProjectStatusReader | None = None
    renderer: CopierRenderer = field(default_factory=CopierRenderer)
    """Renders templates in a child process; the owner of the deps closes it."""


async def _current_status(deps: ScaffolderDeps, project_id: str) -> ProjectStatus | None:
    if deps.project_reader is None:
        return None
    return await deps.project_reader.get_project_status(project_id)


def _result(message: ScaffolderMessage, started: float, error: str | None = None) -> BaseResult:
    return BaseResult(
        request_id=message.request_id,
        status="failed" if error else "success",
        error=error,
        duration_ms=int((time.monotonic() - started) * 1000),
    )


async def _already_scaffolded(
    message: ScaffolderMessage, deps: ScaffolderDeps, head: str, url: str, started: float
) -> BaseResult:
    """Succeed without touching the repository; advance the project only if it lags behind."""
    current = await _current_status(deps, message.project_id)
    steps: list[ProjectStatus] = []
    if current in (ProjectStatus.DRAFT, ProjectStatus.FAILED):
        steps = [ProjectStatus.SCAFFOLDING, ProjectStatus.SCAFFOLDED]
    elif current in (None, ProjectStatus.SCAFFOLDING):
        steps = [ProjectStatus.SCAFFOLDED]
    for status in steps:
        await deps.projects.set_project_status(message.project_id, status, repository_url=url)
    text = f"{message.repo_full_name} was already scaffolded (head {head[:12]}); left unchanged"
    log.info("scaffold_skipped", repo=message.repo_full_name, head=head, status=str(current))
    await report_step(deps.progress, message, "completed", text, step="done", pct=100)
    return _result(message, started)


async def _render_commit_push(
    message: ScaffolderMessage, deps: ScaffolderDeps, clone_url: str, branch: str
) -> str:
    """Render into a fresh working copy, commit, push; the pushed sha."""
    settings = deps.settings
    await asyncio.to_thread(settings.work_dir.mkdir, parents=True, exist_ok=True)
    workdir = Path(
        await asyncio.to_thread(tempfile.mkdtemp, prefix="scaffold-", dir=settings.work_dir)
    )
    try:
        await report_step(
            deps.progress, message, "progress", "rendering templates", step="render", pct=30
        )
        files = await render_project(
            workdir,
            renderer=deps.renderer,
            templates_dir=settings.templates_dir,
            modules=message.modules,
            project_name=message.project_name,
            repo_full_name=message.repo_full_name,
        )
        await report_step(
            deps.progress,
            message,
            "progress",
            f"committing {len(files)} files",
            step="commit",
            pct=60,
        )
        await init_worktree(workdir, branch=branch)
        modules = ", ".join(check_modules(message.modules, settings.templates_dir))
        sha = await commit_all(
            workdir,
            f"Scaffold {one_line(message.project_name)} ({modules})",
            identity=settings.identity,
        )
        assert sha is not None  # the first commit of a fresh repository always exists
        await report_step(
            deps.progress, message, "progress", f"pushing to {branch}", step="push", pct=80
        )
        await push(
            workdir, clone_url, branch, auth=deps.git.auth(), timeout_s=settings.git_timeout_s
        )
        return sha
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)


def _check_own_repository(message: ScaffolderMessage) -> None:
    """A project is scaffolded into its own repository only (`<owner>/<slug>-<id8>`), so a
    message can never make the scaffolder write into, or record, another project's one."""
    own = repo_name(message.project_id, message.project_name)
    if split_full_name(message.repo_full_name)[1] != own:
        raise ScaffolderError(
            f"repository {message.repo_full_name} is not this project's own ('<owner>/{own}')"
        )


def is_transient(error: Exception) -> bool:
    """True for failures worth a retry: a git deadline, an unreachable or failing git host."""
    if isinstance(error, GitTimeoutError):
        return True
    if isinstance(error, ProviderError):
        return error.status_code is None or error.status_code == 429 or error.status_code >= 500
    return False


async def handle_scaffolder_message(
    message: ScaffolderMessage, deps: ScaffolderDeps, *, final_attempt: bool = True
) -> BaseResult:
    """Scaffold the project's repository once; set the project's status; report progress.

    A transient failure (`is_transient`) is raised for the bus to retry, unless this is the
    final attempt, when it fails the project like any other failure."""
    started = time.monotonic()
    branch = deps.settings.git.default_branch
    await report_step(
        deps.progress, message, "started", f"scaffolding {message.repo_full_name}", pct=0
    )
    url: str | None = None
    try:
        check_modules(message.modules, deps.settings.templates_dir)
        _check_own_repository(message)
        existing = await deps.git.get_repo(message.repo_full_name)
        if existing is not None:
            head = await deps.git.head_of(message.repo_full_name, branch)
            if head is not None:
                return await _already_scaffolded(message, deps, head, existing.clone_url, started)
        current = await _current_status(deps, message.project_id)
        if current in _BEYOND_SCAFFOLDED:
            raise ScaffolderError(
                f"project is {current.value if current else ''} but its repository is empty"
            )
        if current not in (ProjectStatus.SCAFFOLDING, ProjectStatus.SCAFFOLDED):
            await deps.projects.set_project_status(message.project_id, ProjectStatus.SCAFFOLDING)
        await report_step(
            deps.progress, message, "progress", "creating the repository", step="repo", pct=10
        )
        repo = await deps.git.create_repo(
            message.repo_full_name, description=one_line(message.project_name)
        )
        url = repo.clone_url
        try:
            sha = await _render_commit_push(message, deps, repo.clone_url, branch)
        except PushRejectedError:
            head = await deps.git.head_of(message.repo_full_name, branch)
            if head is None:
                raise
            return await _already_scaffolded(message, deps, head, repo.clone_url, started)
    except (ScaffolderError, GitError) as error:
        if not final_attempt and is_transient(error):
            log.info("scaffold_retry", repo=message.repo_full_name, error=str(error))
            raise
        reason = f"scaffolding {message.repo_full_name} failed: {error}"
        log.warning("scaffold_failed", repo=message.repo_full_name, error=str(error))
        if await _current_status(deps, message.project_id) not in _BEYOND_SCAFFOLDED:
            await deps.projects.set_project_status(
                message.project_id, ProjectStatus.FAILED, repository_url=url, error=reason
            )
        await report_step(deps.progress, message, "failed", "scaffolding failed", error=reason)
        return _result(message, started, reason)
    await deps.projects.set_project_status(
        message.project_id, ProjectStatus.SCAFFOLDED, repository_url=repo.clone_url
    )
    log.info("scaffolded", repo=message.repo_full_name, sha=sha, modules=message.modules)
    text = f"{message.repo_full_name} scaffolded at {sha[:12]} ({', '.join(message.modules)})"
    await report_step(deps.progress, message, "completed", text, step="done", pct=100)
    return _result(message, started)
