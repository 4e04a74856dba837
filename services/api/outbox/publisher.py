"""Who the relay publishes through: a Protocol, and the adapter over the messaging runtime."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel

__all__ = ["OutboxPublisher"]


class OutboxPublisher(Protocol):
    """Publishes typed messages on streams (`shared.messaging.Bus`)."""

    async def publish(self, stream: str, message: BaseModel, *, correlation_id: str | None) -> str:
        """Publish `message` on `stream`; raises when the transport fails."""
        ...

    async def publish_many(
        self,
        items: Sequence[tuple[str, BaseModel]],
        *,
        correlation_ids: Sequence[str | None] | None = None,
        traceparents: Sequence[str | None] | None = None,
    ) -> list[str]:
        """Publish several (stream, message) in one round trip, each with its correlation id
        and in its trace; returns their entry ids; raises when the transport fails (then
        any of them may have been published)."""
        ...
