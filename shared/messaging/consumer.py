"""The consumer: bounded concurrency, ack after success, retries, dead letters, shutdown.

The read loop hands each new entry to a task of its own, up to `concurrency` at once. A
handler that succeeded queues its acknowledgement (`acks.py`) and frees its slot. The next
read is one of two kinds:

- caught up, nothing to acknowledge: XREADGROUP blocking up to `block_ms`, which `stop()`
  cancels at once (an entry the server delivered meanwhile stays pending, reclaimed later);
- behind (the last read was full) or with acknowledgements queued: one script acknowledges
  them and reads without blocking, its entries coming back as one JSON string (redis-py
  parses every reply element in Python, so a batch in one element costs far less CPU).

Crash recovery (lease renewal, reclaim of dead consumers' entries) and trimming run in
`upkeep.py`, beside the read loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import structlog
from prometheus_client import Counter, Histogram

from shared import registry
from shared.contracts import BaseResult
from shared.messaging.acks import Acker
from shared.messaging.backoff import Backoff, retry_delay_s
from shared.messaging.cancel import raise_if_cancelling, wait_event
from shared.messaging.context import MessageContext, bind_log_context, current_envelope
from shared.messaging.envelope import Envelope, decode_message
from shared.messaging.errors import DeadLetter, DecodeError, MessagingError, Retry
from shared.messaging.metrics import Metrics
from shared.messaging.options import ConsumerOptions, Handler
from shared.messaging.publisher import Publisher
from shared.messaging.tracing import NO_SPAN, ConsumeSpan, Tracing
from shared.messaging.transport import (
    Entry,
    Fields,
    Transport,
    TransportConnectionError,
    TransportNoGroupError,
)
from shared.messaging.upkeep import Upkeep
from shared.observability.context import current_task_id, task_of_request

__all__ = ["Consumer", "ConsumerOptions", "Handler"]

log = structlog.get_logger("shared.messaging.consumer")


class Consumer:
    """Consumes one or more streams as one consumer of a group; `run()` until `stop()`.

    Built from the parts it uses: the `transport` it reads and acknowledges through, the
    `publisher` of handlers' results (to their `callback_stream`), `metrics` and `tracing`.
    `Bus.consumer(...)` wires them from the facade."""

    def __init__(
        self,
        transport: Transport,
        streams: Sequence[str],
        handler: Handler,
        *,
        publisher: Publisher,
        metrics: Metrics,
        tracing: Tracing,
        group: str,
        consumer_name: str,
        options: ConsumerOptions,
        required_groups: Sequence[str] | None = None,
    ) -> None:
        self.transport = transport
        self.publisher = publisher
        self.metrics = metrics
        self.tracing = tracing
        self.streams = list(streams)
        self.specs = {stream: registry.resolve(stream) for stream in self.streams}
        self.handler = handler
        self.group = group
        self.name = consumer_name
        self.options = options
        self._required = required_groups
        self.inflight: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._retries: set[asyncio.Task[None]] = set()
        self._slot_free = asyncio.Event()
        self._behind = False
        """The last read was full: more entries are probably waiting."""
        self._stopping = asyncio.Event()
        self._grace_s = options.shutdown_timeout_s
        """How long in-flight handlers may finish once stopped."""
        self._parked: asyncio.Task[list[Entry]] | None = None
        """The blocking read in progress, ended by `stop()`."""
        self.upkeep = Upkeep(self)
        self._series: dict[tuple[str, str, str], tuple[Histogram, Counter]] = {}
        self.acks = Acker(self.transport, group, self.other_groups)

    def required_groups(self, stream: str) -> tuple[str, ...]:
        """Every group that must acknowledge an entry of `stream` before it is deleted."""
        groups = self._required if self._required is not None else self.specs[stream].groups
        return tuple(dict.fromkeys((self.group, *groups)))

    def other_groups(self, stream: str) -> tuple[str, ...]:
        """The required groups other than this consumer's own."""
        return tuple(g for g in self.required_groups(stream) if g != self.group)

    @property
    def free_slots(self) -> int:
        """How many more entries this consumer may handle right now."""
        return max(self.options.concurrency - len(self.inflight), 0)

    def stop(self, *, grace_s: float | None = None) -> None:
        """Ask `run()` to stop reading, finish in-flight handlers and return; those still
        running after `grace_s` (default: `options.shutdown_timeout_s`) are cancelled and
        left pending. A blocking read in progress is cancelled at once rather than left to
        run out its block time."""
        if grace_s is not None:
            self._grace_s = grace_s
        self._stopping.set()
        self._slot_free.set()
        if self._parked is not None:
            self._parked.cancel()

    @property
    def stopping(self) -> bool:
        """True once `stop()` was called."""
        return self._stopping.is_set()

    async def ensure_groups(self) -> None:
        """Create this consumer's group on each stream unless it exists."""
        for stream in self.streams:
            await self.transport.ensure_group(stream, self.group)

    async def run(self) -> None:
        """Consume until `stop()` (graceful, up to the shutdown deadline) or cancellation.
        A stopped consumer stays stopped (`stop()` before `run()` makes it return at once)."""
        upkeep = asyncio.create_task(self.upkeep.run(), name=f"upkeep:{self.name}")
        cancelled = False
        try:
            await self._read_loop()
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            try:  # leases are still renewed while in-flight handlers finish
                await self._drain(graceful=not cancelled)
            finally:
                upkeep.cancel()
                await asyncio.gather(upkeep, return_exceptions=True)

    async def _read_loop(self) -> None:
        backoff = Backoff(base_s=0.1, max_s=5.0)
        need_groups = True
        acks = self.acks
        try:
            while not self.stopping:
                raise_if_cancelling()
                acks.reader_will_take = False  # until the loop waits on its own handlers
                try:
                    if need_groups:
                        await self.ensure_groups()
                        need_groups = False
                    if self.free_slots == 0:
                        acks.reader_will_take = True  # a finishing handler wakes this loop
                        self._slot_free.clear()
                        await self._slot_free.wait()  # set by every finished handler, stop()
                        continue
                    entries = await self._read(self.free_slots)
                    backoff.reset()
                except TransportNoGroupError:
                    log.warning("group_missing_recreating", group=self.group, queues=self.streams)
                    need_groups = True
                    continue
                except TransportConnectionError as exc:
                    delay_s = backoff.next_delay_s()
                    log.warning("redis_unavailable", error=str(exc), retry_in_s=round(delay_s, 3))
                    await wait_event(self._stopping, delay_s)
                    continue
                except Exception:
                    delay_s = backoff.next_delay_s()
                    log.exception("read_failed", group=self.group, retry_in_s=round(delay_s, 3))
                    await wait_event(self._stopping, delay_s)
                    continue
                for entry in entries:
                    self.spawn(entry, attempt=1)
                if entries and self.free_slots:
                    # one turn for the handlers just started: those done by then have their
                    # acknowledgements sent with the next read
                    acks.reader_will_take = True
                    await asyncio.sleep(0)
        finally:
            acks.reader_will_take = False

    async def _read(self, count: int) -> list[Entry]:
        """Read up to `count` new entries. With acknowledgements queued, or behind (the last
        read was full), one script sends them and reads without blocking; otherwise
        XREADGROUP blocks up to `block_ms` for the next entry, one only: the rest of a burst
        follows by the script, whose reply costs less to parse."""
        batches, counters = self.acks.take()
        if not batches and not self._behind:
            entries = await self._read_parked()
            self._behind = bool(entries)
            return entries
        try:
            entries = await self.transport.read_group_now(
                self.group, self.name, self.streams, count=count, acks=batches
            )
        except BaseException as exc:
            self.acks.failed(batches, counters, exc)
            raise
        self.acks.sent(counters)
        self._behind = len(entries) == count
        return entries

    async def _read_parked(self) -> list[Entry]:
        """The blocking read, in a task of its own that `stop()` cancels: its connection is
        closed (redis-py disconnects a command cut short; the pool opens a new one), and an
        entry the server delivered just before is left pending here, reclaimed later by the
        group's reclaim like any entry of a consumer that died. Nothing is acknowledged or
        queued to be: a cancelled read drops no acknowledgement."""
        if self.stopping:  # stopped during an await since the loop last looked
            return []
        parked = asyncio.ensure_future(
            self.transport.read_group(
                self.group, self.name, self.streams, count=1, block_ms=self.options.block_ms
            )
        )
        self._parked = parked
        try:
            return await parked  # this task's own cancellation cancels the read too
        except asyncio.CancelledError:
            task = asyncio.current_task()
            cancelling = task is not None and task.cancelling() > 0
            if parked.cancelled() and self._stopping.is_set() and not cancelling:
                return []  # ended by stop()
            raise
        finally:
            self._parked = None

    async def _tell_invalid(self, payload: str | None, error: str) -> None:
        """Hand an invalid entry to `on_invalid`; its failure is logged, never raised."""
        if self.options.on_invalid is None:
            return
        try:
            await self.options.on_invalid(payload, error)
        except Exception:
            log.exception("on_invalid_failed")

    def spawn(self, entry: Entry, *, attempt: int) -> None:
        """Handle an entry in its own task, counted against the concurrency."""
        key = (entry.stream, entry.entry_id)
        if key in self.inflight:
            return
        task = asyncio.create_task(self._process(entry, attempt), name=f"handle:{entry.entry_id}")
        self.inflight[key] = task

    def _finished(self, key: tuple[str, str]) -> None:
        self.inflight.pop(key, None)
        self._slot_free.set()

    async def _drain(self, *, graceful: bool) -> None:
        """Finish in-flight handlers up to the deadline; cancel the rest (left pending); send
        the acknowledgements still queued."""
        for task in self._retries:
            task.cancel()
        tasks = list(self.inflight.values())
        if graceful and tasks:
            _, late = await asyncio.wait(tasks, timeout=self._grace_s)
            if late:
                log.warning("shutdown_deadline_passed", left_pending=len(late))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._retries, return_exceptions=True)
        self.inflight.clear()  # a task cancelled before it started never released its slot
        await self.acks.drain(attempts=self.options.ack_attempts if graceful else 1)

    async def _process(self, entry: Entry, attempt: int) -> None:
        try:
            await self._handle(entry, attempt)
        finally:  # here rather than in a done callback: the read loop wakes a turn earlier
            self._finished((entry.stream, entry.entry_id))

    async def _handle(self, entry: Entry, attempt: int) -> None:
        spec = self.specs[entry.stream]
        if entry.fields is None:  # deleted while pending: nothing to handle
            self.acks.add(entry.stream, entry.entry_id)
            return
        try:
            envelope = Envelope.from_fields(entry.fields)
            message = decode_message(spec, envelope)
        except DecodeError as exc:
            await self.dead_letter(entry, attempt, reason=exc.reason, error=exc.detail)
            await self._tell_invalid(entry.fields.get("payload"), f"{exc.reason}: {exc.detail}")
            return
        ctx = MessageContext(
            entry.stream,
            entry.entry_id,
            envelope,
            self.group,
            self.name,
            attempt,
            self.options.max_attempts,
        )
        # each entry runs in a task of its own, with its own copy of the context: what is
        # bound here is seen by the handler and what it calls, and vanishes with the task
        current_envelope.set(envelope)
        task_id = task_of_request(message)
        current_task_id.set(task_id)
        bind_log_context(
            envelope.correlation_id, entry.stream, envelope.type, attempt, entry.entry_id
        )
        seconds, processed = self._hot_metrics((spec.name, self.group, envelope.type))
        tracing = self.tracing
        span_scope = (
            ConsumeSpan(
                tracing, entry.stream, envelope.type, entry.entry_id, envelope.traceparent, attempt
            )
            if tracing.enabled
            else NO_SPAN
        )
        started = time.perf_counter()
        with span_scope as span:
            if span is not None:
                span.set_attribute("orchestrator.correlation_id", envelope.correlation_id)
                if task_id:
                    span.set_attribute("orchestrator.task_id", task_id)
            try:
                result = await self.handler(message, ctx)
            except Retry as signal:
                await self._failed(entry, ctx, signal.reason, delay_s=signal.delay_s)
                return
            except DeadLetter as signal:
                await self.dead_letter(entry, attempt, reason="rejected", error=signal.reason)
                return
            except Exception as exc:  # noqa: BLE001 - counted as a failed attempt, never acked
                if span is not None:
                    span.record_exception(exc)
                log.warning("handler_failed", error=f"{type(exc).__name__}: {exc}")
                await self._failed(entry, ctx, f"{type(exc).__name__}: {exc}", delay_s=None)
                return
            finally:
                seconds.observe(time.perf_counter() - started)
            if isinstance(result, BaseResult):
                callback = getattr(message, "callback_stream", None)
                if callback:
                    try:
                        await self.publisher.publish(callback, result)
                    except (registry.RegistryError, MessagingError) as exc:
                        await self.dead_letter(
                            entry, attempt, reason="result_undeliverable", error=str(exc)
                        )
                        return
            self.acks.add(entry.stream, entry.entry_id, processed)

    def _hot_metrics(self, labels: tuple[str, str, str]) -> tuple[Histogram, Counter]:
        """The latency and processed series of a (queue, group, type), looked up once."""
        found = self._series.get(labels)
        if found is None:
            metrics = self.metrics
            found = (metrics.handler_seconds.labels(*labels), metrics.processed.labels(*labels))
            self._series[labels] = found
        return found

    async def _failed(
        self, entry: Entry, ctx: MessageContext, error: str, *, delay_s: float | None
    ) -> None:
        """A failed attempt: dead-letter after the last, else schedule a retry with backoff."""
        spec = self.specs[entry.stream]
        self.metrics.failed.labels(spec.name, self.group, ctx.envelope.type).inc()
        if ctx.is_last_attempt:
            await self.dead_letter(entry, ctx.attempt, reason="exhausted", error=error)
            return
        self.metrics.retried.labels(spec.name, self.group, ctx.envelope.type).inc()
        if delay_s is None:
            delay_s = retry_delay_s(
                ctx.attempt, base_s=self.options.retry_base_s, max_s=self.options.retry_max_s
            )
        # stay well inside the reclaim idle time, so no other consumer takes it meanwhile
        delay_s = min(delay_s, self.options.reclaim_idle_ms / 2000)
        log.info("retry_scheduled", delay_s=round(delay_s, 3), error=error)
        task = asyncio.create_task(self._retry_later(entry, delay_s))
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _retry_later(self, entry: Entry, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        backoff = Backoff(base_s=0.1, max_s=3.0)
        while not self.stopping:
            raise_if_cancelling()
            try:
                claimed = await self.transport.claim(
                    entry.stream, self.group, self.name, entry.entry_id
                )
                if claimed is None:
                    return
                count = await self.transport.delivery_count(
                    entry.stream, self.group, entry.entry_id
                )
            except (TransportConnectionError, TransportNoGroupError) as exc:
                log.warning("retry_claim_failed", error=str(exc))
                await asyncio.sleep(backoff.next_delay_s())
                continue
            self.spawn(claimed, attempt=max(count, 1))
            return

    async def dead_letter(self, entry: Entry, attempt: int, *, reason: str, error: str) -> None:
        """Move an entry to its dead-letter stream and acknowledge it, in one atomic step."""
        fields: Fields = dict(entry.fields or {})
        fields.update(
            {
                "dlq_reason": reason,
                "dlq_error": error[:4000],
                "dlq_attempts": str(attempt),
                "dlq_group": self.group,
                "dlq_consumer": self.name,
                "dlq_stream": entry.stream,
                "dlq_entry_id": entry.entry_id,
                "dlq_at_ms": str(int(time.time() * 1000)),
            }
        )
        dead_stream = registry.dead_letter_stream(entry.stream)
        await self._ack(entry, dead_letter=(dead_stream, fields))
        spec = self.specs[entry.stream]
        self.metrics.dead_lettered.labels(spec.name, self.group, reason).inc()
        log.error(
            "dead_lettered",
            queue=entry.stream,
            entry_id=entry.entry_id,
            reason=reason,
            attempts=attempt,
            error=error[:500],
        )

    async def _ack(self, entry: Entry, *, dead_letter: tuple[str, Fields]) -> None:
        """Copy to the dead-letter stream and acknowledge (deleting once every required group
        has), in one step; retried on connection loss. When Redis stays away, the entry stays
        pending and is reclaimed later: never lost."""
        backoff = Backoff(base_s=0.1, max_s=3.0)
        for attempt in range(1, self.options.ack_attempts + 1):
            try:
                await self.transport.ack(
                    entry.stream,
                    self.group,
                    entry.entry_id,
                    other_groups=self.other_groups(entry.stream),
                    dead_letter=dead_letter,
                )
                return
            except (TransportConnectionError, TransportNoGroupError) as exc:
                if attempt == self.options.ack_attempts:
                    log.error("ack_failed_left_pending", entry_id=entry.entry_id, error=str(exc))
                    return
                await asyncio.sleep(backoff.next_delay_s())
