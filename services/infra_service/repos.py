"""Where a deploy fetches a repository from: a local bare repository or a GitHub URL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.infra_service.errors import RepositoryNotFoundError
from services.infra_service.settings import InfraSettings
from shared.git import RepoNameError, split_full_name

__all__ = ["RepoSource", "repo_source"]


@dataclass(frozen=True)
class RepoSource:
    """A clone URL (never with a credential in it) and whether fetching needs the token."""

    url: str
    needs_token: bool
    local_path: Path | None = None


def repo_source(repo_full_name: str, settings: InfraSettings) -> RepoSource:
    """The source of `owner/name`: the bare repository under the repositories directory, or
    the GitHub URL. Nothing else is fetched: no URL, no absolute path, no `..`, no name whose
    local path resolves (symlinks included) outside the repositories directory."""
    try:
        owner, name = split_full_name(repo_full_name.removesuffix(".git"))
    except RepoNameError:
        raise RepositoryNotFoundError(
            f"{repo_full_name!r} is not an owner/name repository"
        ) from None
    if settings.git_provider == "github":
        base = settings.github_git_url.rstrip("/")
        return RepoSource(url=f"{base}/{owner}/{name}.git", needs_token=True)
    root = settings.effective_repos_dir
    path = root / owner / f"{name}.git"
    if not path.resolve().is_relative_to(root):
        raise RepositoryNotFoundError(
            f"{repo_full_name!r} resolves outside the repositories directory"
        )
    return RepoSource(url=str(path), needs_token=False, local_path=path)
