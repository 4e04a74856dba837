"""Redis keys of the conversation core (declared once, here).

Keys of questions and notifications are namespaced by the front door (`telegram`, `cli`), so
an answer or a task's progress goes to the door that asked. The PO session is the user's,
whatever the door: the bot and `orchestrator chat` talk to the same PO worker.
"""

from __future__ import annotations

from shared.registry import worker_record_key

__all__ = [
    "WORKER_LIVE_STATUSES",
    "answered_key",
    "notify_active_key",
    "notify_epoch_key",
    "notify_health_key",
    "notify_task_key",
    "pending_key",
    "refusal_key",
    "reply_key",
    "reply_wanted_key",
    "session_key",
    "worker_record_key",
]

# `worker_record_key` (the worker registry's layout, `shared.registry`): the core only reads a
# record's `status` to tell a live PO worker from a dead one.
WORKER_LIVE_STATUSES = frozenset({"starting", "running", "busy"})
"""Statuses of a worker record that can still take input."""


def session_key(user_id: int) -> str:
    """The id of a user's PO worker (a string), shared by every front door."""
    return f"chat:po:{user_id}"


def pending_key(door: str) -> str:
    """Hash: request_id → JSON of a question whose answer is not delivered yet."""
    return f"chat:{door}:pending"


def answered_key(door: str, request_id: str) -> str:
    """Set once the answer to `request_id` was delivered (a redelivered update is skipped)."""
    return f"chat:{door}:answered:{request_id}"


def notify_task_key(door: str, task_id: str) -> str:
    """Hash: the notification of one task (chat, message id, last event id, phase)."""
    return f"chat:{door}:notify:{task_id}"


def notify_active_key(door: str) -> str:
    """Set of task ids whose notification is not final yet."""
    return f"chat:{door}:notify:active"


def notify_epoch_key(door: str) -> str:
    """Unix time (s) the notifier first ran; tasks created before it are not announced."""
    return f"chat:{door}:notify:epoch"


def notify_health_key(door: str, task_id: str, change: int) -> str:
    """Set once the owner was told of change number `change` of the health of the release
    deployed by `task_id` (down, or back up): one message per change and door."""
    return f"chat:{door}:notify:health:{task_id}:{change}"


def refusal_key(door: str, telegram_id: int) -> str:
    """Set while an unknown user has been told no (they are not told again until it expires)."""
    return f"chat:{door}:refused:{telegram_id}"


def reply_wanted_key(request_id: str) -> str:
    """Set while a front door waits for the reply to `request_id` (before it is requested)."""
    return f"chat:reply:{{{request_id}}}:wanted"


def reply_key(request_id: str) -> str:
    """List: the reply to `request_id`, pushed by whichever relay saw it (one hash slot with
    its marker, so one script checks the marker and pushes)."""
    return f"chat:reply:{{{request_id}}}:answer"
