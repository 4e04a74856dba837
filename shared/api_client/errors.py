"""Errors of the API client.

ApiClientError
├── ApiUnavailableError        the API could not be reached (connection, timeout)
└── ApiStatusError             the API answered with an error status; carries `ErrorBody`
    ├── UnauthorizedError      401
    ├── ForbiddenError         403
    ├── NotFoundError          404
    ├── ConflictError          409 (including invalid_transition, no_free_port)
    ├── ValidationError        422 (`fields` names each problem)
    └── ServerError            5xx

ApiCallError                   what an actor's adapter raises when a call it made failed:
                               the status code (None: unreachable) and the error code, in the
                               actor's own words (langgraph and the scheduler share it)
"""

from __future__ import annotations

from shared.api_client.schemas import ErrorBody, FieldProblem

__all__ = [
    "ApiCallError",
    "ApiClientError",
    "ApiStatusError",
    "ApiUnavailableError",
    "ConflictError",
    "ForbiddenError",
    "NotFoundError",
    "ServerError",
    "UnauthorizedError",
    "ValidationError",
    "error_for_status",
    "refusal_text",
]


class ApiClientError(Exception):
    """Base of the client's errors."""


class ApiUnavailableError(ApiClientError):
    """The API did not answer (refused connection, timeout, ...)."""


class ApiStatusError(ApiClientError):
    """The API answered with an error; `body` is its `ErrorBody`."""

    def __init__(self, status_code: int, body: ErrorBody) -> None:
        super().__init__(f"{status_code} {body.code}: {body.message}")
        self.status_code = status_code
        self.body = body

    @property
    def code(self) -> str:
        """The machine-readable error code."""
        return self.body.code

    @property
    def fields(self) -> list[FieldProblem]:
        """The invalid fields, when the error names any."""
        return self.body.fields


def refusal_text(error: ApiStatusError) -> str:
    """What to tell a person whose request the API refused: each field's problem, or the
    error's message (never the refused value itself)."""
    problems = "; ".join(f"{field.field}: {field.problem}" for field in error.fields)
    return problems or error.body.message


class UnauthorizedError(ApiStatusError):
    """401: missing, unknown or revoked credential."""


class ForbiddenError(ApiStatusError):
    """403: the credential's scope does not allow the operation."""


class NotFoundError(ApiStatusError):
    """404: absent, or not visible to the caller."""


class ConflictError(ApiStatusError):
    """409: conflicts with the current state (unique value, lifecycle, full server)."""


class ValidationError(ApiStatusError):
    """422: invalid request; `fields` names each problem."""


class ServerError(ApiStatusError):
    """5xx: the API failed."""


_BY_STATUS: dict[int, type[ApiStatusError]] = {
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
}


def error_for_status(status_code: int, body: ErrorBody) -> ApiStatusError:
    """The typed error of an error response."""
    if status_code >= 500:
        return ServerError(status_code, body)
    return _BY_STATUS.get(status_code, ApiStatusError)(status_code, body)


class ApiCallError(Exception):
    """A REST API call an actor made failed; the actor's adapter raises it from the client's
    error (`from`), with its own message. `status_code` is None when the API could not be
    reached; `code` is the `ErrorBody` code when the API answered."""

    def __init__(
        self, message: str, *, status_code: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code

    @property
    def is_conflict(self) -> bool:
        """True for 409 (e.g. a status change refused because the task moved on)."""
        return self.status_code == 409

    @property
    def is_not_found(self) -> bool:
        """True for 404."""
        return self.status_code == 404
