"""Which git provider to use and how to reach it; `build_provider` turns settings into one."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from shared.git.github import GitHubProvider, resolve_token_ref
from shared.git.local import LocalGitProvider
from shared.git.provider import GitProvider

__all__ = ["GitSettings", "build_provider"]


class GitSettings(BaseModel):
    """Git hosting settings (nest as `git` in an actor's settings: `..._GIT__PROVIDER=github`)."""

    provider: Literal["local", "github"] = "local"
    repos_dir: Path | None = None
    """Where local bare repositories live; default `<data_dir>/repos`."""
    default_branch: str = "main"
    owner: str = Field(default="projects", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
    """The one owner (a directory of `repos_dir`, a GitHub user or organisation) under which
    the system creates project repositories; the provider refuses every other owner."""
    github_api_url: str = "https://api.github.com"
    github_git_url: str = "https://github.com"
    github_token_ref: str | None = None
    """Reference to the token, `env:NAME` or `file:PATH`; never the token itself."""
    github_private: bool = True


def build_provider(settings: GitSettings, *, data_dir: Path) -> GitProvider:
    """The provider the settings name; the GitHub token is resolved here, from its reference."""
    if settings.provider == "github":
        if not settings.github_token_ref:
            raise ValueError("the github provider needs github_token_ref (env:NAME or file:PATH)")
        return GitHubProvider(
            resolve_token_ref(settings.github_token_ref),
            api_url=settings.github_api_url,
            git_url=settings.github_git_url,
            private=settings.github_private,
            owner=settings.owner,
        )
    return LocalGitProvider(
        settings.repos_dir or data_dir / "repos",
        default_branch=settings.default_branch,
        owner=settings.owner,
    )
