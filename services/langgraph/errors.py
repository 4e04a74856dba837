"""Errors of the langgraph actor.

Tree::

    LanggraphError              base of every error raised by `services.langgraph`
    ├── StepFailedError         a step of a flow failed (its message is the task's error)
    │   ├── StepTimeoutError    a step's awaited answer did not arrive before its deadline
    │   └── RepositoryMismatchError  a project's record names a repository not its own
    ├── TaskCancelledError      the task was cancelled through the API while it ran
    └── CheckpointerConfigError the configured checkpointer URL cannot be used

`ApiCallError` (the REST API refused or failed a request, status code kept) is the shared
one, `shared.api_client.errors.ApiCallError`, re-exported here for the flows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.api_client.errors import ApiCallError

__all__ = [
    "ApiCallError",
    "CheckpointerConfigError",
    "LanggraphError",
    "RepositoryMismatchError",
    "StepFailedError",
    "StepTimeoutError",
    "TaskCancelledError",
]


class LanggraphError(Exception):
    """Base of every error raised by the langgraph actor."""


class StepFailedError(LanggraphError):
    """A step of a flow failed; the message says which step and why."""

    def __init__(self, step: str, reason: str, *, kept: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"step {step} failed: {reason}")
        self.step = step
        self.reason = reason
        self.kept: dict[str, Any] = dict(kept or {})
        """State the failed step still adds to the flow (e.g. the cost of the agent run it
        recorded before failing), so the task's result says what it spent."""


class RepositoryMismatchError(StepFailedError):
    """A project's record names a repository that is not the project's own (a value the
    system did not write): the flow refuses to touch it."""


class StepTimeoutError(StepFailedError):
    """The answer a step waited for did not arrive before its deadline."""

    def __init__(self, step: str, timeout_s: float) -> None:
        super().__init__(step, f"no answer within {timeout_s:g}s")
        self.timeout_s = timeout_s


class TaskCancelledError(LanggraphError):
    """The task was cancelled through the API."""


class CheckpointerConfigError(LanggraphError):
    """The checkpointer URL names a backend that cannot be used."""
