"""`/health` (the process answers) and `/ready` (the database answers); no credential."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from services.api.deps import database
from shared.api_client.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> Health:
    """Liveness: the process serves requests."""
    return Health(status="ok")


@router.get("/ready", responses={503: {"model": Health, "description": "Not ready"}})
async def ready(request: Request) -> Health:
    """Readiness: the database answers."""
    try:
        async with database(request).engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        body = Health(status="unavailable", checks={"database": type(error).__name__})
        return JSONResponse(body.model_dump(), status_code=503)  # type: ignore[return-value]
    return Health(status="ok", checks={"database": "ok"})
