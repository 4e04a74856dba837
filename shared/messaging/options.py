"""Options of a consumer and the handler signature."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from shared.contracts import BaseResult
from shared.messaging.context import MessageContext

__all__ = ["ConsumerOptions", "Handler", "InvalidHandler"]

Handler = Callable[[Any, MessageContext], Awaitable[BaseResult | None]]
"""`async def handler(message, ctx) -> BaseResult | None`."""

InvalidHandler = Callable[[str | None, str], Awaitable[None]]
"""`async def on_invalid(payload, error)`: told of an entry that failed validation (its raw
JSON payload, or None when the entry had none) after it went to the dead-letter stream."""


@dataclass(frozen=True)
class ConsumerOptions:
    """Tuning of one consumer; the defaults suit production."""

    concurrency: int = 8
    max_attempts: int = 5
    block_ms: int = 1_000
    """Longest blocking read (shortened below the client's socket timeout)."""
    reclaim_idle_ms: int = 60_000
    """Entries idle this long in a dead consumer's hands are reclaimed."""
    retry_base_s: float = 0.5
    retry_max_s: float = 30.0
    shutdown_timeout_s: float = 10.0
    trim_interval_s: float = 30.0
    observer_cap: int = 10_000
    """An observer group pins at most this many entries; older ones are trimmed anyway."""
    ack_attempts: int = 8
    on_invalid: InvalidHandler | None = None
    """Called for each entry dead-lettered as invalid, e.g. to answer its requester at once."""
