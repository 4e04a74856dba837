"""Hot routes answer their model's JSON directly.

FastAPI validates a returned model against the route's response model again, turns it into
Python objects and encodes those with `json`. A route that already holds the exact model
skips that: pydantic writes the JSON bytes once. The route keeps its `response_model`, so the
OpenAPI document is unchanged.
"""

from __future__ import annotations

from fastapi.responses import Response
from pydantic import BaseModel

__all__ = ["model_response"]


def model_response(model: BaseModel, status_code: int = 200) -> Response:
    """`model` as the JSON body of a response."""
    return Response(
        model.__pydantic_serializer__.to_json(model),
        status_code=status_code,
        media_type="application/json",
    )
