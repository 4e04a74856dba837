"""Errors of the git layer.

```
GitError                      base of every error raised by shared.git
├── RepoNameError             a repository name that is not "owner/name"
│   └── RepoOutsideRootError  a repository the provider must not reach (another owner,
│                             a path that resolves outside its directory)
├── GitCommandError           a git subprocess exited non-zero (stderr redacted)
│   └── PushRejectedError     the remote refused a push (it already has other history)
├── GitTimeoutError           a git subprocess outlived its deadline and was killed
├── RepoNotFoundError         the provider has no repository of that name
└── ProviderError             the provider's API refused or failed a request
```

Messages never contain a secret: the command runner redacts every secret it was given, and
provider errors carry the HTTP status and the API's message, never request headers.
"""

from __future__ import annotations

__all__ = [
    "GitCommandError",
    "GitError",
    "GitTimeoutError",
    "ProviderError",
    "PushRejectedError",
    "RepoNameError",
    "RepoNotFoundError",
    "RepoOutsideRootError",
]


class GitError(Exception):
    """Base of every error raised by `shared.git`."""


class RepoNameError(GitError, ValueError):
    """A repository name that is not a safe `owner/name`."""


class RepoOutsideRootError(RepoNameError):
    """A repository outside what the provider may reach: another owner than the configured
    one, or a local path that resolves (symlinks, `..`) outside the repositories directory."""


class GitCommandError(GitError):
    """A git subprocess exited with a non-zero status."""

    def __init__(self, command: str, returncode: int, stderr: str) -> None:
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        super().__init__(f"git {command} failed with exit status {returncode}: {detail}")


class PushRejectedError(GitCommandError):
    """The remote refused a push because it holds history the push does not contain."""


class GitTimeoutError(GitError, TimeoutError):
    """A git subprocess did not finish within its deadline and was killed."""


class RepoNotFoundError(GitError, LookupError):
    """The provider has no repository of that name."""


class ProviderError(GitError):
    """The provider's API refused or failed a request."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)
