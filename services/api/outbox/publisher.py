"""Who the relay publishes through: a Protocol, and the adapter over the messaging runtime."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

__all__ = ["OutboxPublisher"]


class OutboxPublisher(Protocol):
    """Publishes one typed message on a stream; returns the stream entry id."""

    async def publish(self, stream: str, message: BaseModel, *, correlation_id: str | None) -> str:
        """Publish `message` on `stream`; raises when the transport fails."""
        ...
