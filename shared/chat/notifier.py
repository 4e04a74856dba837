"""`TaskNotifier`: one chat message per task of a user, edited in place until the result.

Discovery: the API's newest tasks are polled (and polled at once when `wake()` is called,
e.g. after the PO answered); a task created after the notifier's epoch and not yet known
gets a message, and its `task_progress:{task_id}` stream is followed from there.

State, per task, in the hash `chat:{door}:notify:{task_id}`: chat id, message id, the id of
the last event shown, the view, and the phase (`following`, `finalizing`, `done`). A
restarted notifier resumes every task of `chat:{door}:notify:active` after its last event id,
so no final notification is lost and none is sent twice.

Deployed apps: at each poll the notifier also lists the releases that serve
(`GET /api/deploys/current`); each change of a release's health the scheduler recorded (down,
back up; numbered by the API) is told to the project's owner in one message, once per door
(`chat:{door}:notify:health:{task_id}:{change}`, set before sending).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import redis.asyncio as aioredis
import structlog

from shared import registry
from shared.api_client import ApiClient, ApiClientError
from shared.api_client.schemas import DeployDTO, DeployHealth
from shared.chat.keys import (
    notify_active_key,
    notify_epoch_key,
    notify_health_key,
    notify_task_key,
)
from shared.chat.progress_text import TaskView
from shared.chat.sink import ChatSink
from shared.contracts import ProgressEvent, ProjectDTO, TaskDTO, TaskStatus
from shared.messaging import Bus, DecodeError, Envelope, decode_message
from shared.messaging.cancel import raise_if_cancelling, wait_event
from shared.messaging.keys import progress_stream

__all__ = ["ChatForOwner", "TaskNotifier"]

log = structlog.get_logger("shared.chat")

ChatForOwner = Callable[[int], Awaitable[int | None]]
"""The chat id that reaches the owner (an API user id) of a task, or None to skip it."""

_TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
_EPOCH_MARGIN_S = 5.0
_STATE_TTL_S = 30 * 86400


class TaskNotifier:
    """Pushes the progress of users' tasks to their chats, restart-safe."""

    def __init__(
        self,
        bus: Bus,
        redis: aioredis.Redis,
        api: ApiClient,
        sink: ChatSink,
        *,
        door: str,
        chat_for_owner: ChatForOwner,
        owner_id: int | None = None,
        poll_s: float = 2.0,
        edit_interval_s: float = 0.5,
        settle_s: float = 10.0,
    ) -> None:
        self.bus = bus
        self.redis = redis
        self.api = api
        self.sink = sink
        self.door = door
        self.chat_for_owner = chat_for_owner
        self.owner_id = owner_id
        self.poll_s = poll_s
        self.edit_interval_s = edit_interval_s
        self.settle_s = settle_s
        self._wake = asyncio.Event()
        self._discover_lock = asyncio.Lock()
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._projects: dict[str, ProjectDTO] = {}
        self._epoch_s = 0.0

    @property
    def busy(self) -> bool:
        """True while some task's notification is not final yet."""
        return any(not follower.done() for follower in self._followers.values())

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every followed task's notification is final; False on timeout."""
        running = [follower for follower in self._followers.values() if not follower.done()]
        if not running:
            return True
        _, pending = await asyncio.wait(running, timeout=timeout_s)
        return not pending

    def wake(self) -> None:
        """Look for new tasks now (e.g. the PO has just created one)."""
        self._wake.set()

    async def run(self) -> None:
        """Resume unfinished notifications, then discover and follow tasks until cancelled."""
        await self.redis.set(notify_epoch_key(self.door), str(time.time()), nx=True)
        epoch = await self.redis.get(notify_epoch_key(self.door))
        self._epoch_s = float(epoch or 0)
        try:
            for raw in await self.redis.smembers(notify_active_key(self.door)):
                self._follow(raw.decode() if isinstance(raw, bytes) else str(raw))
            while True:
                raise_if_cancelling()  # the API and Redis clients may have swallowed it
                try:
                    await self.discover()
                except Exception as error:  # noqa: BLE001  # the API or chat may fail; keep polling
                    raise_if_cancelling()
                    log.warning("notifier_discovery_failed", error=f"{type(error).__name__}")
                try:
                    await self.announce_health()
                except Exception as error:  # noqa: BLE001  # the API or chat may fail; keep polling
                    raise_if_cancelling()
                    log.warning("notifier_health_failed", error=f"{type(error).__name__}")
                await wait_event(self._wake, self.poll_s)
                self._wake.clear()
        finally:
            followers = list(self._followers.values())
            for follower in followers:
                follower.cancel()
            await asyncio.gather(*followers, return_exceptions=True)

    async def discover(self) -> int:
        """Announce the new tasks of the served users; returns how many."""
        async with self._discover_lock:
            page = await self.api.list_tasks(owner_id=self.owner_id, limit=50)
            announced = 0
            for task in reversed(page.items):  # oldest first: messages in creation order
                if task.created_at.timestamp() < self._epoch_s - _EPOCH_MARGIN_S:
                    continue
                if await self.redis.exists(notify_task_key(self.door, task.id)):
                    continue
                if await self._announce(task):
                    announced += 1
            return announced

    async def announce_health(self) -> int:
        """Tell the owners of the releases whose health changed (down, back up) since the
        notifier's epoch, once per change; returns how many messages were sent."""
        page = await self.api.list_current_releases(owner_id=self.owner_id, limit=500)
        sent = 0
        for release in page.items:
            changed_at = release.health_changed_at
            if release.health_changes == 0 or changed_at is None or release.health is None:
                continue
            if changed_at.timestamp() < self._epoch_s - _EPOCH_MARGIN_S:
                continue
            if await self._announce_health(release):
                sent += 1
        return sent

    async def _announce_health(self, release: DeployDTO) -> bool:
        key = notify_health_key(self.door, release.task_id, release.health_changes)
        if await self.redis.exists(key):
            return False
        project = await self._project(release.project_id)
        chat_id = None if project.owner_id is None else await self.chat_for_owner(project.owner_id)
        if chat_id is None or not await self.redis.set(key, "sent", nx=True, ex=_STATE_TTL_S):
            return False
        try:
            await self.sink.send(chat_id, _health_text(project.name, release))
        except Exception as error:  # noqa: BLE001  # e.g. the user blocked the bot: give up on it
            log.warning(
                "health_notification_undeliverable", task_id=release.task_id, error=str(error)
            )
            return False
        log.info(
            "health_notification_sent",
            project_id=release.project_id,
            health=str(release.health),
            change=release.health_changes,
        )
        return True

    async def _project(self, project_id: str) -> ProjectDTO:
        project = self._projects.get(project_id)
        if project is None:
            project = await self.api.get_project(project_id)
            self._projects[project_id] = project
        return project

    async def _announce(self, task: TaskDTO) -> bool:
        project = await self._project(task.project_id)
        if project.owner_id is None:
            return False
        chat_id = await self.chat_for_owner(project.owner_id)
        if chat_id is None:
            return False
        key = notify_task_key(self.door, task.id)
        if not await self.redis.hsetnx(key, "phase", "sending"):
            return False
        view = TaskView(task_id=task.id, task_type=task.type.value, project=project.name)
        try:
            message_id = await self.sink.send(chat_id, view.text())
        except Exception as error:  # noqa: BLE001  # e.g. the user blocked the bot: give up on it
            log.warning("task_notification_undeliverable", task_id=task.id, error=str(error))
            await self.redis.hset(key, "phase", "undeliverable")
            return False
        state: dict[Any, Any] = {
            "chat_id": str(chat_id),
            "message_id": str(message_id),
            "last_event_id": "0-0",
            "view": json.dumps(asdict(view)),
            "phase": "following",
        }
        await self.redis.hset(key, mapping=state)
        await self.redis.expire(key, _STATE_TTL_S)
        await self.redis.sadd(notify_active_key(self.door), task.id)
        self._follow(task.id)
        return True

    def _follow(self, task_id: str) -> None:
        running = self._followers.get(task_id)
        if running is not None and not running.done():
            return
        self._followers[task_id] = asyncio.create_task(
            self._follow_task(task_id), name=f"notify:{task_id}"
        )

    async def _follow_task(self, task_id: str) -> None:
        try:
            await self._follow_until_done(task_id)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a broken follower must not end the notifier
            raise_if_cancelling()
            log.exception("notifier_follow_failed", task_id=task_id, error=str(error))
            await asyncio.sleep(self.poll_s)
            self._followers.pop(task_id, None)
            self._follow(task_id)

    async def _follow_until_done(self, task_id: str) -> None:
        key = notify_task_key(self.door, task_id)
        state = {_s(k): _s(v) for k, v in (await self.redis.hgetall(key)).items()}
        if state.get("phase") not in ("following", "finalizing") or "message_id" not in state:
            await self.redis.srem(notify_active_key(self.door), task_id)
            return
        chat_id, message_id = int(state["chat_id"]), int(state["message_id"])
        view = TaskView(**json.loads(state["view"]))
        if state.get("phase") == "finalizing" and view.final:  # stopped around the final edit
            await self._final_edit(task_id, chat_id, message_id, view)
            return
        position = state.get("last_event_id", "0-0")
        stream = progress_stream(task_id)
        spec = registry.resolve(stream)
        shown, shown_at, checked_at = view.text(), 0.0, time.monotonic()
        while True:
            raise_if_cancelling()
            behind = view.text() != shown  # an edit held back by the interval: flush it soon
            block_ms = max(int(self.edit_interval_s * 1000), 10) if behind else 1000
            entries = await self.bus.transport.read(
                {stream: position}, count=100, block_ms=block_ms
            )
            terminal: ProgressEvent | None = None
            for entry in entries:
                position = entry.entry_id
                event = _decode(spec, entry.fields)
                if event is None:
                    continue
                view.apply(event)
                if event.is_terminal:
                    terminal = event
                    break
            if terminal is not None:
                await self._finish(task_id, chat_id, message_id, view, terminal, position)
                return
            now = time.monotonic()
            if view.text() != shown and now - shown_at >= self.edit_interval_s:
                await self.sink.edit(chat_id, message_id, view.text())
                shown, shown_at = view.text(), now
            if entries:
                fields: dict[Any, Any] = {
                    "last_event_id": position,
                    "view": json.dumps(asdict(view)),
                }
                await self.redis.hset(key, mapping=fields)
            elif now - checked_at >= self.settle_s:
                checked_at = now
                task = await self.api.get_task(task_id)
                if task.status in _TERMINAL:  # ended without a terminal event we could read
                    await self._finish(task_id, chat_id, message_id, view, None, position)
                    return

    async def _settled_task(self, task_id: str) -> TaskDTO | None:
        """The task row once its status is final (the flow may update it just after the event)."""
        deadline = time.monotonic() + self.settle_s
        task: TaskDTO | None = None
        while time.monotonic() < deadline:
            with contextlib.suppress(ApiClientError):
                task = await self.api.get_task(task_id)
                if task.status in _TERMINAL:
                    return task
            await asyncio.sleep(0.2)
        return task

    async def _finish(
        self,
        task_id: str,
        chat_id: int,
        message_id: int,
        view: TaskView,
        event: ProgressEvent | None,
        position: str,
    ) -> None:
        task = await self._settled_task(task_id)
        view.finish(task if task is not None and task.status in _TERMINAL else None, event)
        key = notify_task_key(self.door, task_id)
        state: dict[Any, Any] = {
            "phase": "finalizing",
            "last_event_id": position,
            "view": json.dumps(asdict(view)),
        }
        await self.redis.hset(key, mapping=state)
        await self._final_edit(task_id, chat_id, message_id, view)

    async def _final_edit(
        self, task_id: str, chat_id: int, message_id: int, view: TaskView
    ) -> None:
        key = notify_task_key(self.door, task_id)
        await self.sink.edit(chat_id, message_id, view.text())
        await self.redis.hset(key, "phase", "done")
        await self.redis.srem(notify_active_key(self.door), task_id)
        log.info("task_notification_final", task_id=task_id, chat_id=chat_id)


def _health_text(project: str, release: DeployDTO) -> str:
    """The message telling a release went down or came back up."""
    restarts = f" The server restarted it {release.restarts} time(s)." if release.restarts else ""
    commit = f"(commit {release.sha[:12]})"
    if release.url is None:  # a bot-only release: its health is its processes' state
        if release.health == DeployHealth.DOWN:
            return f"🔴 {project} is down: its bot is not running {commit}.{restarts}"
        return f"🟢 {project} is back up: its bot runs again {commit}."
    if release.health == DeployHealth.DOWN:
        return (
            f"🔴 {project} is down: {release.url} does not answer its health check "
            f"{commit}.{restarts}"
        )
    return f"🟢 {project} is back up: {release.url} answers again {commit}."


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(spec: registry.QueueSpec, fields: dict[str, str] | None) -> ProgressEvent | None:
    if fields is None:
        return None
    try:
        event = decode_message(spec, Envelope.from_fields(fields))
    except DecodeError:
        return None
    return event if isinstance(event, ProgressEvent) else None
