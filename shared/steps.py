"""A task's steps: their request ids and the progress stream their events go to.

langgraph runs a task as a flow of steps; each step that asks another actor for work sends a
message whose `request_id` is `<task_id>~<step>` (`step_request_id`), the same every time the
step is replayed, so a replay is recognised as a duplicate. The actor that handles it finds
the task again with `task_of_step`.

Which progress stream a message's events go to (`progress_target`), decided once here:

- a step's request (`<task_id>~<step>`) reports into its task's stream,
  `task_progress:{task_id}`. The task's flow owns that stream: it sets the percentage and
  sends the terminal event, so a step's own `started`, `completed` and `failed` are
  published there as plain `progress` events (`current_step` `<label>:<type>`) without a
  percentage; a step's end never ends its task's stream.
- any other message (e.g. the scheduler's provisioning, or a test's own request) reports
  into a stream of its own keyed by its **request id**, `task_progress:{request_id}`, and
  its events go there unchanged. The request id, not the correlation id: a correlation id
  is shared by every message of one flow, so two requests of one flow would end each
  other's stream; the request id is the message's own (its result carries it too).

`StepProgressReporter` applies that rule for an actor; it needs only something that
publishes a progress event (`ProgressPublisher`, which the bus is).
"""

from __future__ import annotations

from typing import Literal, Protocol

import structlog

from shared.contracts import BaseMessage, ProgressEvent
from shared.messaging.errors import MessagingError
from shared.step_ids import STEP_SEPARATOR, step_request_id, task_of_step

__all__ = [
    "STEP_SEPARATOR",
    "ProgressPublisher",
    "ProgressReporter",
    "StepProgressReporter",
    "progress_target",
    "report_step",
    "step_request_id",
    "task_of_step",
]

log = structlog.get_logger(__name__)


def progress_target(message: BaseMessage) -> tuple[str, bool]:
    """The id whose progress stream the message's events go to, and whether the message owns
    that stream (True: a stream of its own, keyed by its request id; False: its task's)."""
    task_id = task_of_step(message.request_id)
    if task_id is not None:
        return task_id, False
    return message.request_id, True


class ProgressPublisher(Protocol):
    """Appends an event to `task_progress:{task_id}` (the bus does)."""

    async def progress(self, task_id: str, event: ProgressEvent) -> str:
        """Publish `event`; the entry id."""
        ...


class StepProgressReporter:
    """Publishes an actor's progress events by the rule of this module; best effort: a
    publishing failure is logged, never raised (progress must not fail the work).

    `label` names the actor's part in `current_step` of a step's start and end, e.g.
    `scaffold` gives `scaffold:completed`."""

    def __init__(self, publisher: ProgressPublisher, *, label: str) -> None:
        if not label:
            raise ValueError("a step progress reporter needs a label (e.g. 'scaffold')")
        self._publisher = publisher
        self._label = label

    def event_for(self, message: BaseMessage, event: ProgressEvent) -> tuple[str, ProgressEvent]:
        """Where `event` goes and what is published there."""
        target, owned = progress_target(message)
        update: dict[str, object] = {"task_id": target}
        if not owned:
            # the flow owns its task's percentage: a step's own 60 % or 100 % would read as
            # the whole task's progress
            update["progress_pct"] = None
            if event.type != "progress":
                update["type"] = "progress"
                update["current_step"] = f"{self._label}:{event.type}"
                if event.error:
                    update["message"] = f"{event.message}: {event.error}"
        return target, event.model_copy(update=update)

    async def report(self, message: BaseMessage, event: ProgressEvent) -> None:
        """Publish `event` for `message` (see the module's rule)."""
        target, published = self.event_for(message, event)
        try:
            await self._publisher.progress(target, published)
        except (MessagingError, OSError) as error:
            log.warning("progress_not_published", task_id=target, error=str(error))


class ProgressReporter(Protocol):
    """Publishes the progress of the work a message asked for (`StepProgressReporter` is
    the real one; an actor's handlers depend on this alone)."""

    async def report(self, message: BaseMessage, event: ProgressEvent) -> None:
        """Publish one event (best effort)."""
        ...


async def report_step(
    reporter: ProgressReporter,
    message: BaseMessage,
    kind: Literal["started", "progress", "completed", "failed"],
    text: str,
    *,
    step: str | None = None,
    pct: int | None = None,
    error: str | None = None,
) -> None:
    """Report one event of the work `message` asked for, through `reporter`."""
    event = ProgressEvent(
        type=kind,
        request_id=message.request_id,
        message=text,
        current_step=step,
        progress_pct=pct,
        error=error,
    )
    await reporter.report(message, event)
