"""Errors of the scheduler.

Tree::

    SchedulerError              base of every error raised by `services.scheduler`
    └── ApiCallError            a call to the REST API failed (transport or 5xx)
        └── ApiConflictError    the API refused a change as conflicting (409), e.g. a task
                                that finished between listing and failing it

A job that raises anything is logged and run again on its next tick; these types let jobs
tell a benign race (`ApiConflictError`) from a real failure.
"""

from __future__ import annotations

__all__ = ["ApiCallError", "ApiConflictError", "SchedulerError"]


class SchedulerError(Exception):
    """Base of every error raised by the scheduler."""


class ApiCallError(SchedulerError):
    """A REST API call failed (connection, timeout, or an unexpected status)."""


class ApiConflictError(ApiCallError):
    """The API refused a change because the resource moved on (HTTP 409)."""
