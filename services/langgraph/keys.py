"""Redis keys the langgraph actor owns (declared once, here).

- `langgraph:flows`        hash  task_id → graph name, for every flow not yet finished
- `langgraph:waits`        hash  task_id → `PendingWait` JSON, for every flow at an interrupt
- `langgraph:answer:<id>`  string  the answer that arrived for request `<id>` (the inbox)
- `langgraph:lock:<task>`  string  the lease of the process advancing that flow
- `langgraph:integrate:<project>`  string  the task whose turn it is to integrate into
  that project's base branch (one at a time per project)
- `langgraph:turn_queue:<project>`  sorted set  the tasks waiting for that turn, scored by
  when they began to wait (a turn given back goes to the first, at once)
"""

from __future__ import annotations

__all__ = [
    "FLOWS_KEY",
    "WAITS_KEY",
    "answer_key",
    "integration_key",
    "lock_key",
    "turn_queue_key",
]

_PREFIX = "langgraph"
FLOWS_KEY = f"{_PREFIX}:flows"
WAITS_KEY = f"{_PREFIX}:waits"


def answer_key(request_id: str) -> str:
    """Where the answer to `request_id` waits until its flow takes it."""
    return f"{_PREFIX}:answer:{request_id}"


def lock_key(task_id: str) -> str:
    """The lease key of a flow."""
    return f"{_PREFIX}:lock:{task_id}"


def integration_key(project_id: str) -> str:
    """The integration turn of a project (its value: the task holding it)."""
    return f"{_PREFIX}:integrate:{project_id}"


def turn_queue_key(project_id: str) -> str:
    """The tasks waiting for a project's integration turn (score: since when)."""
    return f"{_PREFIX}:turn_queue:{project_id}"
