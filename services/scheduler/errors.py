"""Errors of the scheduler.

Tree::

    SchedulerError              base of every error raised by `services.scheduler`
    └── ApiConflictError        the API refused a change as conflicting (409), e.g. a task
                                that finished between listing and failing it; also an
                                `ApiCallError`

    ApiCallError                a call to the REST API failed (transport or 5xx): the shared
                                one, `shared.api_client.errors.ApiCallError`

A job that raises anything is logged and run again on its next tick; these types let jobs
tell a benign race (`ApiConflictError`) from a real failure.
"""

from __future__ import annotations

from shared.api_client.errors import ApiCallError

__all__ = ["ApiCallError", "ApiConflictError", "SchedulerError"]


class SchedulerError(Exception):
    """Base of every error raised by the scheduler."""


class ApiConflictError(ApiCallError, SchedulerError):
    """The API refused a change because the resource moved on (HTTP 409)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, status_code=409, code=code)
