"""Cancelled tasks: infra-service stops a deploy job whose task was cancelled.

A request of a task's step is named `<task_id>~<step>` (`shared.steps`); its task's status
lives in the REST API, which `POST /api/tasks/{id}/cancel` changes. infra-service asks the API
(`ApiCancellation`), the one source of truth, before a job starts and every `cancel_poll_s`
while it runs; no new queue, key or contract field is needed, and a cancellation reaches the
job even while langgraph is down. A message that is no task's step (the scheduler's
provisioning) is never cancelled. An API that cannot be reached never cancels a job: the poll
only logs and asks again.

`until_cancelled` runs the job's work beside the poll. Work that finished wins a race with a
cancellation (the job is done: nothing is undone); otherwise the work is cancelled, which
kills the `ansible-playbook` process group (`AnsiblePlaybookRunner`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import structlog

from shared.api_client import ApiClient
from shared.api_client.errors import ApiClientError, NotFoundError
from shared.contracts import TaskStatus

__all__ = [
    "ApiCancellation",
    "CancellationSource",
    "CancelledTasks",
    "NeverCancelled",
    "until_cancelled",
]

T = TypeVar("T")

_log = structlog.get_logger(__name__)


class CancellationSource(Protocol):
    """Tells whether a task was cancelled."""

    async def is_cancelled(self, task_id: str) -> bool:
        """True once the task is cancelled; False when unknown or unreachable."""
        ...


class ApiCancellation:
    """The task's status in the REST API (the caller owns and closes the client)."""

    def __init__(self, api: ApiClient) -> None:
        self._api = api

    async def is_cancelled(self, task_id: str) -> bool:
        """True when the API says the task is `cancelled`."""
        try:
            task = await self._api.get_task(task_id)
        except NotFoundError:
            return False
        except ApiClientError as error:
            _log.warning("task status unavailable", task_id=task_id, error=str(error))
            return False
        return task.status == TaskStatus.CANCELLED


class NeverCancelled:
    """No task source (infra-service without the API): jobs run to their end."""

    async def is_cancelled(self, task_id: str) -> bool:
        """Always False."""
        return False


@dataclass
class CancelledTasks:
    """A fake source for tests: tasks are cancelled by `cancel()`; questions are counted."""

    cancelled: set[str] = field(default_factory=set)
    questions: int = 0

    def cancel(self, task_id: str) -> None:
        """Cancel a task."""
        self.cancelled.add(task_id)

    async def is_cancelled(self, task_id: str) -> bool:
        """True once `cancel(task_id)` was called."""
        self.questions += 1
        return task_id in self.cancelled


async def _asked(source: CancellationSource, task_id: str) -> bool:
    """The source's answer; a source that fails says "not cancelled" (a job is never stopped
    or skipped by a broken poll)."""
    try:
        return await source.is_cancelled(task_id)
    except Exception as error:  # noqa: BLE001 - logged; the job goes on
        _log.error("cancellation poll failed", task_id=task_id, error=str(error))
        return False


async def _wait_cancelled(source: CancellationSource, task_id: str, poll_s: float) -> None:
    while not await _asked(source, task_id):  # noqa: ASYNC110 - the state is in the API
        await asyncio.sleep(poll_s)


async def until_cancelled(
    work: Coroutine[Any, Any, T],
    *,
    task_id: str | None,
    source: CancellationSource,
    poll_s: float,
) -> tuple[T | None, bool]:
    """Run `work` unless or until `task_id` is cancelled: `(result, False)` when it finished,
    `(None, True)` when the task was cancelled first (the work was cancelled, or never run)."""
    if task_id is None:
        return await work, False
    if await _asked(source, task_id):
        work.close()
        return None, True
    running = asyncio.create_task(work)
    watching = asyncio.create_task(_wait_cancelled(source, task_id, poll_s))
    try:
        await asyncio.wait({running, watching}, return_when=asyncio.FIRST_COMPLETED)
        if not running.done():
            running.cancel()
            await asyncio.wait({running})  # raises only when this caller is cancelled
        if running.cancelled():
            _log.info("job cancelled with its task", task_id=task_id)
            return None, True
        return running.result(), False
    finally:
        for task in (running, watching):
            task.cancel()
        await asyncio.gather(running, watching, return_exceptions=True)
