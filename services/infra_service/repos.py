"""Where a deploy fetches a repository from: a local bare repository or a GitHub URL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.infra_service.errors import RepositoryNotFoundError
from services.infra_service.settings import InfraSettings

__all__ = ["RepoSource", "repo_source"]


@dataclass(frozen=True)
class RepoSource:
    """A clone URL (never with a credential in it) and whether fetching needs the token."""

    url: str
    needs_token: bool
    local_path: Path | None = None


def repo_source(repo_full_name: str, settings: InfraSettings) -> RepoSource:
    """The source of `owner/name` (or of an explicit URL or absolute path)."""
    if "://" in repo_full_name:
        if "@" in repo_full_name.split("://", 1)[1].split("/", 1)[0]:
            raise RepositoryNotFoundError("repository URLs must not carry credentials")
        if repo_full_name.startswith("file://"):
            path = Path(repo_full_name.removeprefix("file://"))
            return RepoSource(url=str(path), needs_token=False, local_path=path)
        return RepoSource(url=repo_full_name, needs_token=repo_full_name.startswith("https://"))
    if repo_full_name.startswith("/"):
        path = Path(repo_full_name)
        return RepoSource(url=str(path), needs_token=False, local_path=path)
    owner, sep, name = repo_full_name.partition("/")
    if not sep or not owner or not name or "/" in name or ".." in (owner, name):
        raise RepositoryNotFoundError(f"{repo_full_name!r} is not an owner/name repository")
    name = name.removesuffix(".git")
    if settings.git_provider == "github":
        base = settings.github_git_url.rstrip("/")
        return RepoSource(url=f"{base}/{owner}/{name}.git", needs_token=True)
    path = settings.effective_repos_dir / owner / f"{name}.git"
    return RepoSource(url=str(path), needs_token=False, local_path=path)
