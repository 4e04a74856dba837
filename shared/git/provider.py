"""The git provider interface: where remote repositories live and how to reach them.

Two real implementations: `LocalGitProvider` (bare repositories under a data directory, the
embedded default) and `GitHubProvider` (GitHub's REST API). Both answer the questions other
actors ask about a remote: does a commit exist there, where does a branch point, which files
did a commit change.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from shared.git.errors import RepoNameError
from shared.git.runner import GitAuth

__all__ = [
    "CommitDiff",
    "CommitSummary",
    "GitProvider",
    "PullRequest",
    "RemoteRepo",
    "split_full_name",
]

_PART = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def split_full_name(full_name: str) -> tuple[str, str]:
    """("org", "repo") of "org/repo"; `RepoNameError` for anything else (no `..`, no `/x/y`,
    no part starting with a dot or a dash)."""
    owner, sep, name = full_name.partition("/")
    if (
        not sep
        or not _PART.match(owner)
        or not _PART.match(name)
        or owner.startswith((".", "-"))
        or name.startswith((".", "-"))
    ):
        raise RepoNameError(f"repository name must be 'owner/name', got {full_name!r}")
    return owner, name


@dataclass(frozen=True)
class RemoteRepo:
    """A repository on a provider."""

    full_name: str
    """"org/repo"."""
    clone_url: str
    """URL git clones and pushes (no credentials in it)."""
    web_url: str
    """URL a person opens (the clone URL for local repositories)."""
    default_branch: str = "main"


@dataclass(frozen=True)
class PullRequest:
    """A pull request of a task branch into a base branch."""

    number: int
    url: str
    """Where a person opens it."""
    state: str
    """`open` or `closed`."""
    merged: bool
    merge_commit_sha: str | None = None
    """The commit the merge left on the base branch (once merged)."""


@dataclass(frozen=True)
class CommitSummary:
    """One commit of a branch's history, as a list shows it."""

    sha: str
    subject: str
    """The first line of its message."""
    author: str
    authored_at: datetime


@dataclass(frozen=True)
class CommitDiff:
    """A commit and its patch, cut at a size (`truncated` then says so)."""

    sha: str
    subject: str
    author: str
    patch: str
    truncated: bool


@runtime_checkable
class GitProvider(Protocol):
    """A host of remote repositories."""

    @property
    def name(self) -> str:
        """Short provider name for logs: `local`, `github`."""
        ...

    def auth(self) -> GitAuth:
        """What git needs to authenticate against this provider's remotes (secret)."""
        ...

    async def get_repo(self, full_name: str) -> RemoteRepo | None:
        """The repository, or None when it does not exist."""
        ...

    async def create_repo(self, full_name: str, *, description: str | None = None) -> RemoteRepo:
        """Create the repository (empty, no commits), or return it when it already exists."""
        ...

    async def head_of(self, full_name: str, branch: str) -> str | None:
        """The commit `branch` points at, or None when the branch (or repository) is absent."""
        ...

    async def heads_of(self, full_name: str, branches: Sequence[str]) -> list[str | None]:
        """`head_of` of each branch, in their order, asked at once (one git process for a
        local repository)."""
        ...

    async def commit_exists(self, full_name: str, sha: str) -> bool:
        """True when the repository holds the commit `sha`."""
        ...

    async def files_changed(self, full_name: str, sha: str) -> list[str]:
        """Paths the commit changed, sorted; `RepoNotFoundError` when there is no such commit."""
        ...

    async def is_ancestor(self, full_name: str, ancestor: str, descendant: str) -> bool:
        """True when `descendant` contains `ancestor` (the same commit counts)."""
        ...

    async def diff_files(self, full_name: str, base: str, head: str) -> list[str]:
        """Paths that differ between two commits, sorted."""
        ...

    async def commits(
        self, full_name: str, branch: str, *, limit: int, offset: int
    ) -> list[CommitSummary]:
        """Up to `limit` commits of `branch`, newest first, after skipping `offset` (an empty
        list for a missing repository or branch)."""
        ...

    async def commit_diff(self, full_name: str, sha: str, *, max_bytes: int) -> CommitDiff:
        """The commit and its patch against its first parent, cut after `max_bytes`;
        `RepoNotFoundError` when the repository or the commit is missing."""
        ...

    async def fast_forward(self, full_name: str, branch: str, *, expected: str, new: str) -> bool:
        """Move `branch` from `expected` to its descendant `new`, compare-and-swap: True when
        the branch is at `new` afterwards (also when it already was), False when it had moved
        elsewhere (nothing changed). `ProviderError` when `new` does not descend from
        `expected`."""
        ...

    async def pull_request(
        self, full_name: str, *, head: str, base: str, title: str, body: str
    ) -> PullRequest:
        """The pull request of `head` into `base`: the existing one, else a new one."""
        ...

    async def merge_pull_request(self, full_name: str, number: int, *, sha: str) -> PullRequest:
        """Merge the pull request if its head is still `sha` (`ProviderError` otherwise);
        a merged one is answered as it is."""
        ...
