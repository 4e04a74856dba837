"""A task step's request id, `<task_id>~<step>`, and its parser: the one definition.

A leaf (it imports nothing of the project), so every layer can use it, the messaging
runtime's context too; `shared.steps` re-exports it beside the progress rules.
"""

from __future__ import annotations

__all__ = ["STEP_SEPARATOR", "step_request_id", "task_of_step"]

STEP_SEPARATOR = "~"
"""Between the task id and the step name in a step's request id."""


def step_request_id(task_id: str, step: str) -> str:
    """The request id of a task's step: `<task_id>~<step>`.

    `ValueError` when the task id is empty or the step is empty or contains the separator
    (`task_of_step` could not find the task again)."""
    if not task_id:
        raise ValueError("a step's request id needs a task id (got an empty one)")
    if not step or STEP_SEPARATOR in step:
        raise ValueError(f"step name {step!r} must be non-empty and contain no {STEP_SEPARATOR!r}")
    return f"{task_id}{STEP_SEPARATOR}{step}"


def task_of_step(request_id: str) -> str | None:
    """The task of a step's request id (`<task_id>~<step>`); None for any other request id."""
    task_id, separator, step = request_id.rpartition(STEP_SEPARATOR)
    return task_id if separator and task_id and step else None
