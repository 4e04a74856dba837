"""Errors and control-flow signals of the messaging runtime.

Tree::

    MessagingError                 base of every error raised by `shared.messaging`
    ├── PublishError               a message could not be written (after retries)
    ├── DecodeError                a stream entry is not a valid message of its queue
    │   (reason: "malformed" JSON/envelope, "invalid" schema, "unknown_type")
    ├── RequestTimeoutError        no reply matched a request within its timeout
    ├── TransportConnectionError   the server is unreachable (transport.py; retried inside)
    ├── TransportNoGroupError      a stream or group is missing (transport.py; re-created)
    └── IdempotencyBusyError       another consumer holds the idempotency lease (see `Retry`)

Control-flow signals raised by handlers (not errors; named for the action):

    Retry        handle this message again later (counts as a delivery attempt)
    DeadLetter   move this message to the dead-letter stream now, with a reason
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "DeadLetter",
    "DecodeError",
    "DecodeReason",
    "IdempotencyBusyError",
    "MessagingError",
    "PublishError",
    "RequestTimeoutError",
    "Retry",
]

DecodeReason = Literal["malformed", "invalid", "unknown_type"]


class MessagingError(Exception):
    """Base of every error raised by the messaging runtime."""


class PublishError(MessagingError):
    """A message could not be written to its stream; it is not in the stream."""


class DecodeError(MessagingError):
    """A stream entry that is not a valid message of its queue."""

    def __init__(self, reason: DecodeReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: DecodeReason = reason
        self.detail = detail


class RequestTimeoutError(MessagingError, TimeoutError):
    """No reply with the request's `request_id` arrived within the timeout."""


class IdempotencyBusyError(MessagingError):
    """The effect of this key is being performed by someone else right now."""


class Retry(Exception):  # noqa: N818 - a control-flow signal, named for the action
    """Raised by a handler: handle the message again after `delay_s` (a delivery attempt)."""

    def __init__(self, reason: str = "retry requested", *, delay_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_s = delay_s


class DeadLetter(Exception):  # noqa: N818 - a control-flow signal, named for the action
    """Raised by a handler: move the message to the dead-letter stream at once."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
