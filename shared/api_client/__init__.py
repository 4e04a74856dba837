"""Typed async client of the REST API: `ApiClient`, its errors, and the API's extra bodies."""

from shared.api_client.client import ApiClient
from shared.api_client.errors import (
    ApiClientError,
    ApiStatusError,
    ApiUnavailableError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ServerError,
    UnauthorizedError,
    ValidationError,
    refusal_text,
)

__all__ = [
    "ApiClient",
    "ApiClientError",
    "ApiStatusError",
    "ApiUnavailableError",
    "ConflictError",
    "ForbiddenError",
    "NotFoundError",
    "ServerError",
    "UnauthorizedError",
    "ValidationError",
    "refusal_text",
]
