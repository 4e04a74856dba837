"""`/health` (the process answers) and `/ready` (the database answers); no credential."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from services.api.deps import database
from shared.api_client.schemas import ErrorBody, Health

router = APIRouter(tags=["health"])

_NO_CREDENTIAL: dict[str, Any] = {"security": []}
"""Declared explicitly: these two operations need no `Authorization` header."""
_TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "The request body exceeds the size limit"}
}
"""The body limit applies to every route, these two included."""


@router.get("/health", responses=_TOO_LARGE, openapi_extra=_NO_CREDENTIAL)
async def health() -> Health:
    """Liveness: the process serves requests."""
    return Health(status="ok")


@router.get(
    "/ready",
    responses={**_TOO_LARGE, 503: {"model": Health, "description": "Not ready"}},
    openapi_extra=_NO_CREDENTIAL,
)
async def ready(request: Request) -> Health:
    """Readiness: the database answers."""
    try:
        async with database(request).engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        body = Health(status="unavailable", checks={"database": type(error).__name__})
        return JSONResponse(body.model_dump(), status_code=503)  # type: ignore[return-value]
    return Health(status="ok", checks={"database": "ok"})
