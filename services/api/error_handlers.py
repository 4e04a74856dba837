"""One error body (`ErrorBody`) for every error the API answers, whatever raised it."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api.errors import ApiError, UnauthenticatedError
from shared.api_client.schemas import ErrorBody, FieldProblem

__all__ = ["ERROR_RESPONSES", "error_response", "install_error_handlers"]

log = logging.getLogger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body is not readable (not JSON, not UTF-8)"},
    401: {"model": ErrorBody, "description": "Missing, unknown or revoked credential"},
    403: {"model": ErrorBody, "description": "The credential's scope does not allow this"},
    404: {"model": ErrorBody, "description": "Not found (or not visible to the caller)"},
    409: {"model": ErrorBody, "description": "Conflicts with the current state"},
    413: {"model": ErrorBody, "description": "The request body exceeds the size limit"},
    422: {"model": ErrorBody, "description": "Invalid request; `fields` names each problem"},
}
"""Documented on every authenticated route, so clients (and Schemathesis) know the shapes."""


def error_response(
    status: int, code: str, message: str, fields: list[FieldProblem] | None = None
) -> JSONResponse:
    """The response of one error: `ErrorBody` with this status."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = ErrorBody(code=code, message=message, fields=fields or [])
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


async def _api_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    fields = [FieldProblem(field=error.field, problem=error.message)] if error.field else []
    return error_response(error.status_code, error.code, error.message, fields)


async def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    fields = [
        FieldProblem(field=".".join(str(part) for part in item["loc"]), problem=item["msg"])
        for item in error.errors()
    ]
    named = ", ".join(problem.field for problem in fields) or "request"
    return error_response(422, "validation_error", f"invalid request: {named}", fields)


async def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    phrase = HTTPStatus(error.status_code).phrase
    code = phrase.lower().replace(" ", "_").replace("-", "_")
    if error.status_code == 401:
        return error_response(401, UnauthenticatedError.code, str(error.detail))
    return error_response(error.status_code, code, str(error.detail or phrase))


async def _integrity_error(_request: Request, _error: Exception) -> JSONResponse:
    return error_response(
        409, "conflict", "the change conflicts with existing data (a unique value)"
    )


async def _data_error(_request: Request, _error: Exception) -> JSONResponse:
    return error_response(
        422, "validation_error", "a value cannot be stored (bad characters or range)"
    )


async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
    log.error("unhandled %s", type(error).__name__, exc_info=error)
    return error_response(500, "internal", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through `ErrorBody`."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(Exception, _unexpected)
