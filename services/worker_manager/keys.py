"""Redis keys of the worker registry (declared once, here)."""

from __future__ import annotations

from shared.registry import WORKER_INDEX_KEY, worker_record_key

__all__ = [
    "ACTIVE_INDEX",
    "API_KEYS",
    "REGISTRY_INDEX",
    "bind_key",
    "create_request_key",
    "deleting_key",
    "registry_key",
    "sent_request_key",
    "started_key",
]

REGISTRY_INDEX = WORKER_INDEX_KEY
"""A set of every worker id the registry knows (its layout is shared: `shared.registry`)."""

ACTIVE_INDEX = "workers:active"
"""A set of the ids of the workers not finished yet (warming, warm, starting, running, busy):
what the monitor reads every pass, so its cost follows the running workers, never the
finished ones (whose records stay in `REGISTRY_INDEX` until they expire)."""

API_KEYS = "workers:api-keys"
"""A hash: worker id → id of the user-scoped API key minted for it (never the secret)."""


registry_key = worker_record_key
"""The hash holding one worker's record: `workers:{<worker_id>}`."""


def create_request_key(request_id: str) -> str:
    """The worker id a create command made (idempotency of `create`)."""
    return f"workers:create:{request_id}"


def sent_request_key(request_id: str) -> str:
    """The input entry a send_message command relayed (idempotency of `send_message`)."""
    return f"workers:sent:{request_id}"


def bind_key(worker_id: str) -> str:
    """A list holding a warm worker's binding (its task's environment) for the moment between
    the manager's push and the wrapper's pop (`pool.py`); it expires if nobody pops it."""
    return f"workers:bind:{worker_id}"


def deleting_key(worker_id: str) -> str:
    """Set while a manager deletes the worker (any replica may take the delete command): the
    owner's monitor, which sees the process end, does not take the stop for a death."""
    return f"workers:deleting:{worker_id}"


def started_key(worker_id: str) -> str:
    """A list a bound warm wrapper pushes `running` onto as it reports `running` (`pool.py`):
    the create waiting for it wakes at once instead of polling the record."""
    return f"workers:started:{worker_id}"
