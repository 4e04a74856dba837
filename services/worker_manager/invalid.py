"""Answer a `worker:commands` entry that failed validation, so its requester learns why now.

The bus dead-letters such an entry; without an answer the requester would wait out its
timeout. When the payload still names a `request_id`, a failed response of the command's
kind goes to `worker:responses` with the validation error. Input values are cut from the
error text, so nothing the requester sent (environment values, say) is echoed back.
"""

from __future__ import annotations

import json
import re

import structlog

from shared import registry
from shared.contracts import CreateWorkerResponse, DeleteWorkerResponse, SendMessageResponse
from shared.messaging import Bus

__all__ = ["InvalidCommandReplier", "redact_validation_error"]

log = structlog.get_logger(__name__)

_INPUT = re.compile(r"\s*\[type=[^\]]*\]")
_HINT = re.compile(r"^\s*For further information visit .*$", re.MULTILINE)


def redact_validation_error(error: str) -> str:
    """A validation error with the offending input values and doc links removed, one line."""
    text = _HINT.sub("", _INPUT.sub("", error))
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


class InvalidCommandReplier:
    """The consumer's `on_invalid` hook for `worker:commands`."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def __call__(self, payload: str | None, error: str) -> None:
        """Publish a failed response when the invalid payload names its request."""
        try:
            data = json.loads(payload) if payload is not None else None
        except ValueError:
            data = None
        request_id = data.get("request_id") if isinstance(data, dict) else None
        if not isinstance(request_id, str) or not isinstance(data, dict):
            return  # nobody to answer: the dead letter is all there is
        reason = f"invalid command: {redact_validation_error(error)}"
        command = data.get("command")
        if command == "create" or (command is None and "config" in data):
            response: CreateWorkerResponse | SendMessageResponse | DeleteWorkerResponse = (
                CreateWorkerResponse(request_id=request_id, success=False, error=reason)
            )
        elif command == "send_message" or (command is None and "message" in data):
            response = SendMessageResponse(request_id=request_id, success=False, error=reason)
        else:
            response = DeleteWorkerResponse(request_id=request_id, success=False, error=reason)
        await self.bus.publish(registry.get("worker:responses").name, response)
        log.warning("invalid_command_answered", request_id=request_id, error=reason)
