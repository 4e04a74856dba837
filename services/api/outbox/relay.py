"""The relay: publishes committed outbox rows to their streams, at least once.

A row is marked published only after the publisher returned, so a crash between the two
publishes it again on the next run (consumers are idempotent by `task_id`/`request_id`).
On a transport failure the relay backs off (up to `max_backoff_s`) and retries the same
row, so the order of a stream is kept. Woken at once by requests that wrote a row; otherwise
it polls every `poll_s`; woken, it lingers `linger_s` (2 ms) first, so the rows of requests
committing at about the same time go in one batch. A batch is one SELECT of the pending rows
(the lag metrics come from it unless the batch is full), one Redis round trip publishing
them all (`publish_many`), and one UPDATE marking them; published rows older than
`retention_s` are deleted at most once every `purge_every_s`. `published` and `batches`
count the rows and the batches (round trips) so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from services.api.db import Database, utc_now
from services.api.outbox.publisher import OutboxPublisher
from services.api.outbox.repository import OutboxRepository
from shared import registry
from shared.messaging.cancel import raise_if_cancelling, wait_event
from shared.observability.metrics import SystemMetrics

__all__ = ["OutboxRelay"]

log = logging.getLogger(__name__)


class OutboxRelay:
    """Moves outbox rows to their streams; `run()` until cancelled."""

    def __init__(
        self,
        database: Database,
        publisher: OutboxPublisher,
        *,
        wake: asyncio.Event | None = None,
        poll_s: float = 0.5,
        batch_size: int = 100,
        max_backoff_s: float = 5.0,
        retention_s: float = 3600.0,
        purge_every_s: float = 60.0,
        linger_s: float = 0.002,
    ) -> None:
        self.database = database
        self.publisher = publisher
        self.wake = wake or asyncio.Event()
        self.poll_s = poll_s
        self.batch_size = batch_size
        self.max_backoff_s = max_backoff_s
        self.retention_s = retention_s
        self.purge_every_s = purge_every_s
        self._next_purge = 0.0
        """When the next batch deletes the rows published over `retention_s` ago (at most
        one such DELETE every `purge_every_s`, not one per batch)."""
        self.linger_s = linger_s
        self.published = 0
        """Rows published so far."""
        self.batches = 0
        """Batches published so far, each in one Redis round trip (`published / batches`:
        the rows per round trip)."""

    async def run(self) -> None:
        """Publish until cancelled, backing off while the publisher or database fails."""
        backoff_s = 0.0
        while True:
            raise_if_cancelling()  # a Redis call may have absorbed it
            self.wake.clear()
            try:
                sent = await self.publish_pending()
                backoff_s = 0.0
                if sent >= self.batch_size:
                    continue  # a full batch: more rows may wait
                # a smaller batch took every pending row; a commit since the `clear` above
                # has set `wake` again, so the wait below returns at once for it
            except Exception as error:  # noqa: BLE001 - keep relaying; the row stays pending
                raise_if_cancelling()
                backoff_s = min(self.max_backoff_s, max(0.05, backoff_s * 2))
                log.warning(
                    "outbox relay: %s: %s; retrying in %.2fs",
                    type(error).__name__,
                    str(error)[:300],
                    backoff_s,
                )
                await asyncio.sleep(backoff_s)
                continue
            await wait_event(self.wake, self.poll_s)
            if self.wake.is_set() and self.linger_s > 0:
                # woken by a commit: other requests in flight commit theirs within the
                # linger, and the next batch takes them all in one round trip
                await asyncio.sleep(self.linger_s)

    async def publish_pending(self) -> int:
        """Publish one batch of pending rows; returns how many were published.

        The rows are published in one Redis round trip and marked after it, in one short
        write at the end of the batch. A row that does not decode ends the batch before it
        (the rows before it are published and marked), its error recorded on it, raised; a
        failed publish marks none of the batch (any of them may have reached its stream: they
        are published again, at least once), its error recorded on its first row, raised.
        Cancelled mid-batch, nothing is marked: those rows are published again later."""
        published: list[int] = []
        failure: tuple[int, Exception] | None = None
        async with self.database.sessionmaker() as session:
            repo = OutboxRepository(session)
            rows = await repo.pending(limit=self.batch_size)
            if len(rows) < self.batch_size:  # every pending row (that no other relay holds)
                waiting = len(rows)
                self._observe_lag(waiting, rows[0].created_at if rows else None)
            else:
                waiting, oldest = await repo.lag()
                self._observe_lag(waiting, oldest)
            if not rows:
                return 0
            messages: list[tuple[str, BaseModel]] = []
            for row in rows:  # a row that does not decode stops the batch before it
                try:
                    message = _decode(row.stream, row.message_type, row.payload)
                except Exception as error:  # noqa: BLE001 - recorded on the row, raised below
                    failure = (row.id, error)
                    break
                messages.append((row.stream, message))
            sending = rows[: len(messages)]
            if messages:
                try:
                    await self.publisher.publish_many(
                        messages,
                        correlation_ids=[row.correlation_id for row in sending],
                        traceparents=[row.traceparent for row in sending],
                    )
                except Exception as error:  # noqa: BLE001 - recorded on its first row, raised
                    failure = (sending[0].id, error)
                else:
                    published = [row.id for row in sending]
                    self.batches += 1
                    log.debug("outbox relay: published a batch of %d rows", len(published))
            async with self.database.write_lock or contextlib.nullcontext():
                if published:
                    await repo.mark_published(published)
                    now = time.monotonic()
                    if now >= self._next_purge:
                        self._next_purge = now + self.purge_every_s
                        await repo.purge_published(utc_now() - timedelta(seconds=self.retention_s))
                if failure is not None:
                    row_id, cause = failure
                    await repo.mark_failed(row_id, f"{type(cause).__name__}: {cause}")
                await session.commit()
        self.published += len(published)
        if failure is not None:
            raise failure[1]
        if len(published) == waiting:
            self._observe_lag(0, None)
        return len(published)

    def _observe_lag(self, waiting: int, oldest: datetime | None) -> None:
        """`orchestrator_outbox_pending` and `orchestrator_outbox_lag_seconds`."""
        metrics = SystemMetrics.default()
        metrics.outbox_pending.set(waiting)
        if oldest is None:
            metrics.outbox_lag_seconds.set(0)
            return
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        metrics.outbox_lag_seconds.set(max(0.0, (utc_now() - oldest).total_seconds()))


def _decode(stream: str, type_name: str, payload: str) -> BaseModel:
    """The typed message of a row, found by its type name among the stream's types."""
    for message_type in registry.resolve(stream).message_types:
        if registry.message_type_name(message_type) == type_name:
            return message_type.model_validate_json(payload)
    raise registry.WrongMessageTypeError(f"{type_name} is not allowed on {stream!r}")
