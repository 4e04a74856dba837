"""The allowed status changes of projects and tasks (everything else is refused)."""

from __future__ import annotations

from typing import TypeVar

from services.api.errors import InvalidTransitionError
from shared.contracts import ProjectStatus, TaskStatus

__all__ = ["PROJECT_TRANSITIONS", "TASK_TRANSITIONS", "check_transition"]

P = ProjectStatus

PROJECT_TRANSITIONS: dict[ProjectStatus, frozenset[ProjectStatus]] = {
    P.DRAFT: frozenset({P.SCAFFOLDING, P.FAILED, P.ARCHIVED}),
    P.SCAFFOLDING: frozenset({P.SCAFFOLDED, P.FAILED, P.ARCHIVED}),
    P.SCAFFOLDED: frozenset({P.DEVELOPING, P.DEPLOYING, P.FAILED, P.ARCHIVED}),
    P.DEVELOPING: frozenset({P.TESTING, P.DEPLOYING, P.SCAFFOLDED, P.ACTIVE, P.FAILED, P.ARCHIVED}),
    P.TESTING: frozenset({P.DEVELOPING, P.DEPLOYING, P.FAILED, P.ARCHIVED}),
    P.DEPLOYING: frozenset({P.ACTIVE, P.SCAFFOLDED, P.FAILED, P.ARCHIVED}),
    P.ACTIVE: frozenset({P.DEVELOPING, P.DEPLOYING, P.FAILED, P.ARCHIVED}),
    P.FAILED: frozenset({P.SCAFFOLDING, P.DEVELOPING, P.DEPLOYING, P.ARCHIVED}),
    P.ARCHIVED: frozenset(),
}
"""Forward along scaffold → develop → test → deploy → active; back to work from active or
failed, and back from work to what the project was (scaffolded, active: an engineering task
ended while the last release still serves); a cancelled first deploy goes back to
scaffolded; any living project may fail or be archived; archived is final."""

T = TaskStatus
TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    T.QUEUED: frozenset({T.RUNNING, T.FAILED, T.CANCELLED}),
    T.RUNNING: frozenset({T.COMPLETED, T.FAILED, T.CANCELLED}),
    T.COMPLETED: frozenset(),
    T.FAILED: frozenset(),
    T.CANCELLED: frozenset(),
}
"""Queued → running → completed or failed; queued or running may be cancelled; the three
ends are final."""

S = TypeVar("S", ProjectStatus, TaskStatus)


def check_transition(kind: str, table: dict[S, frozenset[S]], current: S, target: S) -> None:
    """Raise `InvalidTransitionError` unless `current → target` is allowed (same = no-op)."""
    if current == target or target in table[current]:
        return
    allowed = ", ".join(sorted(s.value for s in table[current])) or "none (final)"
    raise InvalidTransitionError(
        f"{kind} cannot go from {current.value!r} to {target.value!r}; allowed: {allowed}",
        field="status",
    )
