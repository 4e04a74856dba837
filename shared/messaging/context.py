"""What a handler knows about the message it handles, and the ambient message context.

While a handler runs, `current_envelope` holds the envelope of its message, so every message
the handler publishes inherits its `correlation_id` and names it as its cause.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import structlog

from shared.messaging.envelope import Envelope

__all__ = ["MessageContext", "bind_log_context", "current_correlation_id", "current_envelope"]

current_envelope: ContextVar[Envelope | None] = ContextVar("current_envelope", default=None)
"""The envelope of the message being handled in this task, if any."""

current_correlation_id: ContextVar[str | None] = ContextVar("current_correlation_id", default=None)
"""A correlation id set by the caller (e.g. an HTTP request) for messages it publishes."""


@dataclass(frozen=True)
class MessageContext:
    """Delivery facts of one message, handed to its handler."""

    stream: str
    entry_id: str
    envelope: Envelope
    group: str
    consumer: str
    attempt: int
    """Delivery attempt, starting at 1 (the stream's delivery count)."""
    max_attempts: int

    @property
    def correlation_id(self) -> str:
        """The correlation id of the message."""
        return self.envelope.correlation_id

    @property
    def is_last_attempt(self) -> bool:
        """True when a failure now sends the message to the dead-letter stream."""
        return self.attempt >= self.max_attempts


_LOG_KEYS = ("correlation_id", "queue", "type", "attempt", "entry_id")
_log_vars: list[ContextVar[Any]] = []


def bind_log_context(
    correlation_id: str, queue: str, message_type: str, attempt: int, entry_id: str
) -> None:
    """Bind the handled message's facts for structlog's `merge_contextvars` in this context:
    `bind_contextvars` once, then its variables directly (it is called for every message)."""
    values = (correlation_id, queue, message_type, attempt, entry_id)
    if not _log_vars:
        tokens = structlog.contextvars.bind_contextvars(**dict(zip(_LOG_KEYS, values, strict=True)))
        _log_vars.extend(tokens[key].var for key in _LOG_KEYS)
        return
    for var, value in zip(_log_vars, values, strict=True):
        var.set(value)
