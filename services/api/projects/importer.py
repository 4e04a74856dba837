"""Import an existing git repository as a project (`POST /api/projects/import`).

Not scaffolded: the source's branches and tags are mirrored into the project's own
repository (`<owner>/<slug>-<id8>`, `shared.git.naming`) on the API's git provider (the one
the scaffolder writes to), and the project starts `scaffolded` with that repository, ready
for engineering tasks and deploys. Its checks are the repository's own
(`.orchestrator/checks.toml`, see `services/worker_wrapper/directives.py`), else its `make
test` targets, else none.

The source is read before anything is created: a bad, unreachable or empty source creates
no project and no repository, and is refused with 422 naming `repo_url` and the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import structlog

from services.api.auth.principal import Principal
from services.api.db import utc_now
from services.api.errors import ApiError, InvalidRequestError
from services.api.projects.models import Project
from services.api.projects.service import ProjectService
from shared.api_client.schemas import ProjectImportBody
from shared.contracts import ProjectStatus
from shared.git import GitError, GitProvider, build_provider
from shared.git.importer import SourceError, check_source_url, fetch_source, push_copy
from shared.git.naming import repo_full_name
from shared.settings import Settings

__all__ = [
    "ImportFailedError",
    "ImportUnavailableError",
    "ProjectImporter",
    "import_project",
    "importer_from_settings",
]

log = structlog.get_logger("services.api.projects")


class ImportUnavailableError(ApiError):
    """The API was started without a git provider to import into."""

    status_code = 503
    code = "imports_unavailable"


class ImportFailedError(ApiError):
    """The project's own repository could not be written (the git host failed)."""

    status_code = 502
    code = "import_failed"


@dataclass(frozen=True)
class ProjectImporter:
    """Where imports go and what they may read."""

    git: GitProvider
    owner: str
    """The owner of the system's repositories (`git.owner`, the same as the scaffolder's)."""
    default_branch: str
    work_dir: Path
    """Where a source is cloned before it is pushed (emptied after each import)."""
    local_roots: Sequence[Path] = ()
    forbidden: Sequence[Path] = field(default_factory=tuple)
    """Local directories never imported from (the system's own repositories)."""
    timeout_s: float = 300.0
    own_urls: Sequence[str] = ()
    """URL prefixes of the system's own repositories on a network host (never imported)."""


def importer_from_settings(settings: Settings) -> ProjectImporter | None:
    """The importer on the API's git provider (`ORCHESTRATOR_API__GIT__*`: the provider the
    scaffolder writes to, so imports go where scaffolds go); None, with a log line, when that
    provider cannot be built (a GitHub provider without token)."""
    git_settings = settings.api.git
    try:
        git = build_provider(git_settings, data_dir=settings.data_dir)
    except ValueError as error:
        log.warning("project_import_unavailable", reason=str(error))
        return None
    repos_dir = git_settings.repos_dir or settings.data_dir / "repos"
    owner = git_settings.owner
    host = urlsplit(git_settings.github_git_url).hostname or "github.com"
    return ProjectImporter(
        git=git,
        owner=owner,
        default_branch=git_settings.default_branch,
        work_dir=(settings.data_dir / "imports").resolve(),
        local_roots=list(settings.api.import_roots),
        forbidden=[repos_dir.resolve()],
        timeout_s=settings.api.import_timeout_s,
        own_urls=(
            [f"{git_settings.github_git_url.rstrip('/')}/{owner}/", f"git@{host}:{owner}/"]
            if git_settings.provider == "github"
            else []
        ),
    )


async def import_project(
    projects: ProjectService,
    principal: Principal,
    importer: ProjectImporter | None,
    body: ProjectImportBody,
    *,
    owner_id: int | None,
) -> Project:
    """A new `scaffolded` project whose repository holds the source's branches."""
    if importer is None:
        raise ImportUnavailableError("this API has no git provider to import repositories into")
    try:
        source = check_source_url(
            body.repo_url, local_roots=importer.local_roots, forbidden=importer.forbidden
        )
    except SourceError as error:
        raise InvalidRequestError(str(error), field="repo_url") from None
    if any(source.lower().startswith(prefix.lower()) for prefix in importer.own_urls):
        raise InvalidRequestError(
            "that is one of the system's own project repositories, not importable",
            field="repo_url",
        )
    auth = importer.git.auth()
    try:
        async with fetch_source(
            source, work_dir=importer.work_dir, auth=auth, timeout_s=importer.timeout_s
        ) as copy:
            project = await projects.new(principal, body, owner_id=owner_id)
            full_name = repo_full_name(importer.owner, project.id, project.name)
            try:
                repo = await importer.git.create_repo(full_name, description=project.name)
                await push_copy(
                    copy,
                    repo.clone_url,
                    default_branch=importer.default_branch,
                    auth=auth,
                    timeout_s=importer.timeout_s,
                )
            except GitError as error:
                raise ImportFailedError(f"writing {full_name} failed: {error}") from None
    except SourceError as error:
        raise InvalidRequestError(str(error), field="repo_url") from None
    project.repository_url = repo.clone_url
    project.status = ProjectStatus.SCAFFOLDED.value
    project.updated_at = utc_now()
    return await projects.projects.add(project)
