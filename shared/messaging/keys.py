"""Key names the runtime owns besides the registry's queues (declared once, here)."""

from __future__ import annotations

import os
import socket
import uuid

from shared import registry

__all__ = ["default_consumer_name", "idempotency_key", "progress_stream"]

IDEMPOTENCY_PREFIX = "idempotency"


def idempotency_key(key: str) -> str:
    """The Redis key that records the effect of `key` (a request_id or task_id)."""
    return f"{IDEMPOTENCY_PREFIX}:{key}"


def progress_stream(task_id: str) -> str:
    """The progress stream of a task, from the registry: `task_progress:{task_id}`."""
    spec = next(registry.iter_queues("progress"))
    return spec.format(**{spec.parameters[0]: task_id})


def default_consumer_name(actor: str) -> str:
    """A consumer name stable for this process: actor, host, pid and a short random tag."""
    return f"{actor}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
