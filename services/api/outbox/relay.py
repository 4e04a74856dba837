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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from services.api.db import Database, utc_now
from services.api.direct import DirectTransaction, Unavailable
from services.api.outbox.publisher import OutboxPublisher
from services.api.outbox.repository import (
    LAG,
    MARK_ONE_PUBLISHED,
    PENDING,
    OutboxRepository,
)
from shared import registry
from shared.messaging.cancel import raise_if_cancelling, wait_event
from shared.observability.metrics import SystemMetrics

__all__ = ["OutboxRelay"]

log = logging.getLogger(__name__)

_Failure = tuple[int, Exception]
"""A row that failed (its id) and why."""
_Batch = tuple[int, list[int], _Failure | None]
"""A batch: the rows waiting when it started, the ids published, its failure."""


async def _mark(tx: DirectTransaction, published: list[int]) -> None:
    """Mark `published` rows as published, in one round trip."""
    now = utc_now()
    await tx.execute_many(MARK_ONE_PUBLISHED, [{"row_id": row, "now": now} for row in published])


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
        Cancelled mid-batch, nothing is marked: those rows are published again later.

        The batch's statements run on the database's direct connections (`direct.py`), not
        in a session: on PostgreSQL one transaction holds the rows (`FOR UPDATE SKIP
        LOCKED`: another relay skips them) from their SELECT to their UPDATE; on SQLite the
        rows are read, published, then marked in a write under the write lock (not held
        during the publish). Through a session when the direct path cannot answer."""
        direct = self.database.direct
        if not direct.enabled:
            return await self._publish_pending_session()
        if self.database.is_sqlite:
            batch = await self._sqlite_batch()
        else:
            batch = await direct.write(self._pg_batch)
        if isinstance(batch, Unavailable):
            return await self._publish_pending_session()
        waiting, published, failure = batch
        await self._after_batch(published, failure)
        if len(published) == waiting:
            self._observe_lag(0, None)
        return len(published)

    async def _sqlite_batch(self) -> _Batch | Unavailable:
        direct = self.database.direct
        rows = await direct.fetch_all(PENDING, {"limit": self.batch_size})
        if isinstance(rows, Unavailable):
            return rows
        waiting = await self._lag(rows, direct.fetch_one)
        if isinstance(waiting, Unavailable):
            return waiting
        published, failure = await self._publish(rows)
        if published:

            async def mark(tx: DirectTransaction) -> None:
                await _mark(tx, published)

            marked = await direct.write(mark, lock=self.database.write_lock)
            if isinstance(marked, Unavailable):  # published: marked through a session
                async with (
                    self.database.write_lock or contextlib.nullcontext(),
                    self.database.sessionmaker() as session,
                ):
                    await OutboxRepository(session).mark_published(published)
                    await session.commit()
        return waiting, published, failure

    async def _pg_batch(self, tx: DirectTransaction) -> _Batch:
        rows = await tx.fetch_all(PENDING, {"limit": self.batch_size})
        waiting = await self._lag(rows, tx.fetch_one)
        assert not isinstance(waiting, Unavailable)
        published, failure = await self._publish(rows)
        await _mark(tx, published)
        return waiting, published, failure

    async def _lag(
        self,
        rows: list[dict[str, Any]],
        fetch_one: Callable[[Any, dict[str, Any]], Awaitable[dict[str, Any] | Unavailable | None]],
    ) -> int | Unavailable:
        """The lag metrics of a batch; returns how many rows wait."""
        if len(rows) < self.batch_size:  # every pending row (that no other relay holds)
            self._observe_lag(len(rows), rows[0]["created_at"] if rows else None)
            return len(rows)
        found = await fetch_one(LAG, {})
        if isinstance(found, Unavailable):
            return found
        assert found is not None
        waiting = int(found["waiting"] or 0)
        self._observe_lag(waiting, found["oldest"])
        return waiting

    async def _publish(self, rows: list[dict[str, Any]]) -> tuple[list[int], _Failure | None]:
        """Publish `rows` in one round trip (up to the first that does not decode); returns
        the ids published and the failure, if any."""
        messages: list[tuple[str, BaseModel]] = []
        failure: _Failure | None = None
        for row in rows:  # a row that does not decode stops the batch before it
            try:
                message = _decode(row["stream"], row["message_type"], row["payload"])
            except Exception as error:  # noqa: BLE001 - recorded on the row, raised after
                failure = (row["id"], error)
                break
            messages.append((row["stream"], message))
        sending = rows[: len(messages)]
        if not messages:
            return [], failure
        try:
            await self.publisher.publish_many(
                messages,
                correlation_ids=[row["correlation_id"] for row in sending],
                traceparents=[row["traceparent"] for row in sending],
            )
        except Exception as error:  # noqa: BLE001 - recorded on its first row, raised after
            return [], (sending[0]["id"], error)
        self.batches += 1
        log.debug("outbox relay: published a batch of %d rows", len(messages))
        return [row["id"] for row in sending], failure

    async def _after_batch(self, published: list[int], failure: _Failure | None) -> None:
        """Count the batch, purge the old rows when due, record a failure and raise it."""
        self.published += len(published)
        now = time.monotonic()
        purge = bool(published) and now >= self._next_purge
        if not purge and failure is None:
            return
        async with (
            self.database.write_lock or contextlib.nullcontext(),
            self.database.sessionmaker() as session,
        ):
            repo = OutboxRepository(session)
            if purge:
                self._next_purge = now + self.purge_every_s
                await repo.purge_published(utc_now() - timedelta(seconds=self.retention_s))
            if failure is not None:
                row_id, cause = failure
                await repo.mark_failed(row_id, f"{type(cause).__name__}: {cause}")
            await session.commit()
        if failure is not None:
            raise failure[1]

    async def _publish_pending_session(self) -> int:
        """`publish_pending` through a session (an in-memory SQLite, no direct path)."""
        async with self.database.sessionmaker() as session:
            repo = OutboxRepository(session)
            rows = [row._asdict() for row in await repo.pending(limit=self.batch_size)]

            async def lag(_statement: Any, _params: dict[str, Any]) -> dict[str, Any]:
                waiting, oldest = await repo.lag()
                return {"waiting": waiting, "oldest": oldest}

            waiting = await self._lag(rows, lag)
            assert not isinstance(waiting, Unavailable)
            if not rows:
                return 0
            published, failure = await self._publish(rows)
            if published:
                async with self.database.write_lock or contextlib.nullcontext():
                    await repo.mark_published(published)
                    await session.commit()
        await self._after_batch(published, failure)
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
