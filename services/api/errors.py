"""Errors of the API; each maps to one HTTP status and one machine-readable code.

ApiError                      500 internal
├── UnauthenticatedError      401 unauthenticated  (no or unknown credential)
├── ForbiddenError            403 forbidden        (credential lacks the scope)
├── NotFoundError             404 not_found        (absent, or not visible to the caller)
├── ConflictError             409 conflict         (unique value taken, ...)
│   ├── InvalidTransitionError    409 invalid_transition (lifecycle refuses the change)
│   └── NoFreePortError           409 no_free_port
└── InvalidRequestError       422 validation_error (a field names the problem)
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ApiError",
    "ConflictError",
    "ForbiddenError",
    "InvalidRequestError",
    "InvalidTransitionError",
    "NoFreePortError",
    "NotFoundError",
    "UnauthenticatedError",
]


class ApiError(Exception):
    """Base of the API's errors: an HTTP status, a code and a message safe to show."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class UnauthenticatedError(ApiError):
    """No credential, or one the API does not know (or that was revoked)."""

    status_code = 401
    code = "unauthenticated"


class ForbiddenError(ApiError):
    """A valid credential whose scope does not allow the operation."""

    status_code = 403
    code = "forbidden"


class NotFoundError(ApiError):
    """The resource does not exist, or the caller may not see it."""

    status_code = 404
    code = "not_found"


class ConflictError(ApiError):
    """The request conflicts with the current state (a unique value already taken)."""

    status_code = 409
    code = "conflict"


class InvalidTransitionError(ConflictError):
    """A status change that the lifecycle does not allow."""

    code = "invalid_transition"


class NoFreePortError(ConflictError):
    """Every port of a server's range is allocated."""

    code = "no_free_port"


class InvalidRequestError(ApiError):
    """A request that is well-formed but whose values the rules refuse."""

    status_code = 422
    code = "validation_error"
