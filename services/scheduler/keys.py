"""Redis keys the scheduler owns (declared once, here). All start with `scheduler:`."""

from __future__ import annotations

__all__ = [
    "DEAD_LETTER_CURSORS",
    "app_failures_key",
    "health_failures_key",
    "lease_key",
    "marker_key",
    "tick_key",
]

PREFIX = "scheduler"

DEAD_LETTER_CURSORS = f"{PREFIX}:dead_letters:last_seen"
"""Hash: dead-letter stream name → id of the last entry reported."""


def tick_key(job: str, tick: int) -> str:
    """Claimed by the one replica that runs `job` at tick number `tick`."""
    return f"{PREFIX}:tick:{job}:{tick}"


def lease_key(job: str) -> str:
    """Held by the replica running `job` right now (no two runs of a job overlap)."""
    return f"{PREFIX}:lease:{job}"


def marker_key(action: str, subject: str) -> str:
    """Set when `action` was done for `subject` (a server handle, a worker id), so it is not
    repeated before the marker expires: `scheduler:done:provision:srv-1`."""
    return f"{PREFIX}:done:{action}:{subject}"


def health_failures_key(handle: str) -> str:
    """Consecutive failed health probes of a server."""
    return f"{PREFIX}:health_failures:{handle}"


def app_failures_key(task_id: str) -> str:
    """Consecutive failed health probes of the release deployed by task `task_id`."""
    return f"{PREFIX}:app_failures:{task_id}"
