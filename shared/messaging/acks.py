"""Acknowledgements of handled entries, sent in batches off the handlers' path.

A handler that succeeded queues its entry here and returns at once: its concurrency slot is
free before the acknowledgement reaches Redis. Queued acknowledgements leave in one of two
ways, whichever comes first:

- with the consumer's next read: the read loop takes them and sends one script that
  acknowledges them and reads new entries without blocking (`read_group_now`), one round
  trip for both. It does so when it was waiting for a free slot or had just handed out
  entries, i.e. when it reads next anyway;
- by a flush task, when the read loop is parked on Redis (a blocking read, a backoff): the
  task waits one turn of the event loop, so acknowledgements of handlers finishing together
  go in one `ack_many` call per stream.

A send that fails puts its acknowledgements back in the queue: the next read or flush sends
them again (XACK and XDEL are idempotent). An entry is never acknowledged before its handler
succeeded; one whose acknowledgement is lost (the process dies first) stays pending and is
reclaimed, so at-least-once delivery holds. `drain()` sends what is left at shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog
from prometheus_client import Counter

from shared.messaging.backoff import Backoff
from shared.messaging.transport import (
    AckBatch,
    Transport,
    TransportConnectionError,
    TransportNoGroupError,
)

__all__ = ["Acker"]

log = structlog.get_logger("shared.messaging.acks")


class Acker:
    """The acknowledgement queue of one consumer (one group)."""

    def __init__(
        self,
        transport: Transport,
        group: str,
        other_groups: Callable[[str], Sequence[str]],
    ) -> None:
        self.transport = transport
        self.group = group
        self.other_groups = other_groups
        self._ids: dict[str, list[str]] = {}
        self._counters: list[Counter] = []
        self._flusher: asyncio.Task[None] | None = None
        self.reader_will_take = False
        """True while the read loop is not parked on Redis: it sends what is queued with its
        next read, so no flush task is needed."""

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._ids.values())

    def add(self, stream: str, entry_id: str, processed: Counter | None = None) -> None:
        """Queue the acknowledgement of a handled entry; `processed` is incremented once it
        is sent."""
        ids = self._ids.get(stream)
        if ids is None:
            self._ids[stream] = [entry_id]
        else:
            ids.append(entry_id)
        if processed is not None:
            self._counters.append(processed)
        if not self.reader_will_take and self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    def take(self) -> tuple[list[AckBatch], list[Counter]]:
        """Everything queued, as one batch per stream, and the counters to increment once the
        batches were sent; the queue is left empty."""
        if not self._ids:
            return [], []
        batches: list[AckBatch] = [
            (stream, ids, self.other_groups(stream)) for stream, ids in self._ids.items()
        ]
        counters = self._counters
        self._ids, self._counters = {}, []
        return batches, counters

    def sent(self, counters: list[Counter]) -> None:
        """Count the acknowledged entries as processed."""
        if not counters:
            return
        first = counters[0]
        if all(counter is first for counter in counters):  # one series: one increment
            first.inc(len(counters))
            return
        for counter in counters:
            counter.inc()

    def put_back(self, batches: list[AckBatch], counters: list[Counter]) -> None:
        """Queue again what could not be sent (ahead of anything queued meanwhile)."""
        for stream, ids, _ in batches:
            self._ids[stream] = [*ids, *self._ids.get(stream, ())]
        self._counters = [*counters, *self._counters]

    def failed(self, batches: list[AckBatch], counters: list[Counter], exc: BaseException) -> None:
        """After a send failed: a lost connection, a missing group or a cancellation puts the
        acknowledgements back; any other error (the server refused the script) drops them, so
        they cannot fail every later read too: their entries stay pending and are reclaimed."""
        if isinstance(exc, Exception) and not isinstance(
            exc, TransportConnectionError | TransportNoGroupError
        ):
            ids = [entry_id for _, entry_ids, _ in batches for entry_id in entry_ids]
            log.error(
                "ack_failed_left_pending", entry_ids=ids[:20], entries=len(ids), error=str(exc)
            )
            return
        self.put_back(batches, counters)

    async def _flush_soon(self) -> None:
        try:
            await asyncio.sleep(0)  # let the handlers finishing in this turn queue theirs
            await self._send_queued()
        except Exception as exc:  # noqa: BLE001 - already put back or logged by `failed`
            log.warning("ack_deferred", error=str(exc), queued=len(self))
        finally:
            self._flusher = None

    async def _send_queued(self) -> None:
        """Send the queue until it is empty; a failure goes to `failed` and is raised."""
        while self._ids:
            batches, counters = self.take()
            sent = 0
            try:
                for stream, ids, others in batches:
                    await self.transport.ack_many(stream, self.group, ids, other_groups=others)
                    sent += 1
            except BaseException as exc:
                self.failed(batches[sent:], counters, exc)
                raise
            self.sent(counters)

    async def drain(self, *, attempts: int) -> None:
        """Send what is queued, retrying connection losses up to `attempts` times in all;
        what still cannot be sent stays pending in Redis and is reclaimed later."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        backoff = Backoff(base_s=0.1, max_s=3.0)
        for attempt in range(1, attempts + 1):
            try:
                await self._send_queued()
                return
            except (TransportConnectionError, TransportNoGroupError) as exc:
                if attempt == attempts:
                    log.error("ack_failed_left_pending", entries=len(self), error=str(exc))
                    return
                await asyncio.sleep(backoff.next_delay_s())
            except Exception:  # noqa: BLE001, S112 - logged and dropped by `failed`; the rest next
                continue
