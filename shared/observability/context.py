"""Ambient facts of the code running now: which actor, which task.

`orchestrator up` runs every actor in one process; each actor runs in an asyncio task of its
own whose context sets `current_actor`, and every task it creates inherits it. Log lines and
spans read it, so they name their actor without passing it around.
"""

from __future__ import annotations

from contextvars import ContextVar

from shared.step_ids import task_of_step

__all__ = ["current_actor", "current_task_id", "task_of_request"]

current_actor: ContextVar[str] = ContextVar("current_actor", default="")
"""The actor this code runs for (`api`, `langgraph`, `worker`, ...); empty outside one."""

current_task_id: ContextVar[str | None] = ContextVar("current_task_id", default=None)
"""The task the message being handled belongs to, when it names one."""


def task_of_request(message: object) -> str | None:
    """The task a message belongs to: its `task_id`, else the task part of a step's request
    id (`<task_id>~<step>`), else None."""
    task_id = getattr(message, "task_id", None)
    if isinstance(task_id, str) and task_id:
        return task_id
    request_id = getattr(message, "request_id", None)
    return task_of_step(request_id) if isinstance(request_id, str) else None
