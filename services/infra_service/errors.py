"""Errors of infra-service. Their texts never contain a secret value.

InfraError
├── SecretError                a secret reference that cannot be resolved
├── ServerNotFoundError        no known server for a handle or an address
├── RepositoryNotFoundError    a repository that does not exist where it should
└── PlaybookError              a playbook that could not be run at all (not a failed run)
"""

from __future__ import annotations

__all__ = [
    "InfraError",
    "PlaybookError",
    "RepositoryNotFoundError",
    "SecretError",
    "SecretNotFoundError",
    "ServerNotFoundError",
]


class InfraError(Exception):
    """Base of every infra-service error."""


class SecretError(InfraError):
    """A secret reference that is malformed or names nothing (the text names the reference only)."""


class SecretNotFoundError(SecretError):
    """Nothing is stored under a well-formed reference (an unset variable, a missing file)."""


class ServerNotFoundError(InfraError):
    """No server is known under the handle or address of a message."""


class RepositoryNotFoundError(InfraError):
    """The repository of a deploy does not exist."""


class PlaybookError(InfraError):
    """`ansible-playbook` could not be started (missing binary, bad playbook path)."""
