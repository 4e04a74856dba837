"""Git hosting behind one small interface, and the git operations every actor needs.

- `GitProvider` (Protocol) with `LocalGitProvider` (bare repositories under the data
  directory; the default) and `GitHubProvider` (REST API, token by reference).
- `clone`, `init_worktree`, `commit_all`, `push`, `remote_head`, `rev_parse`: real `git`
  subprocesses on asyncio; credentials travel in the environment (`GitAuth`), never argv.
- Questions about a remote go through the provider: `head_of`, `commit_exists`,
  `files_changed`.
"""

from shared.git.errors import (
    GitCommandError,
    GitError,
    GitTimeoutError,
    ProviderError,
    PushRejectedError,
    RepoNameError,
    RepoNotFoundError,
    RepoOutsideRootError,
)
from shared.git.github import GitHubProvider, resolve_token_ref
from shared.git.local import LocalGitProvider
from shared.git.ops import (
    clone,
    commit_all,
    commit_exists_in,
    files_changed_in,
    init_worktree,
    push,
    remote_head,
    rev_parse,
)
from shared.git.provider import (
    CommitDiff,
    CommitSummary,
    GitProvider,
    PullRequest,
    RemoteRepo,
    split_full_name,
)
from shared.git.runner import GitAuth, GitIdentity, run_git
from shared.git.settings import GitSettings, build_provider

__all__ = [
    "CommitDiff",
    "CommitSummary",
    "GitAuth",
    "GitCommandError",
    "GitError",
    "GitHubProvider",
    "GitIdentity",
    "GitProvider",
    "GitSettings",
    "GitTimeoutError",
    "LocalGitProvider",
    "ProviderError",
    "PullRequest",
    "PushRejectedError",
    "RemoteRepo",
    "RepoNameError",
    "RepoNotFoundError",
    "RepoOutsideRootError",
    "build_provider",
    "clone",
    "commit_all",
    "commit_exists_in",
    "files_changed_in",
    "init_worktree",
    "push",
    "remote_head",
    "resolve_token_ref",
    "rev_parse",
    "run_git",
    "split_full_name",
]
