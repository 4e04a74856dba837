"""Beside a consumer's read loop: lease renewal, reclaim, trimming and gauges.

- Lease renewal: every third of the reclaim idle time, entries this consumer is handling get
  their idle time reset (XCLAIM JUSTID), so a long handler keeps its claim.
- Reclaim: entries idle longer than the reclaim idle time (their consumer died) are claimed
  with XAUTOCLAIM; one delivered more often than `max_attempts` goes to the dead-letter
  stream (a message that kills its consumer cannot loop forever). The entries of a consumer
  of this host whose process is gone are claimed at once, from the first turn on: a process
  started again after a crash goes on with its predecessor's work without waiting.
- Trim: entries below every required group's floor (oldest pending, or past the last
  delivered) are removed with XTRIM MINID; an observer's floor is raised to keep at most
  `observer_cap` entries, so a stalled observer cannot pin memory forever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

import structlog

from shared import registry
from shared.messaging.backoff import Backoff
from shared.messaging.cancel import raise_if_cancelling
from shared.messaging.keys import consumer_died_here
from shared.messaging.metrics import Metrics
from shared.messaging.options import ConsumerOptions
from shared.messaging.transport import (
    Entry,
    Transport,
    TransportConnectionError,
    TransportNoGroupError,
    parse_id,
)

__all__ = ["Kept", "Upkeep", "trim_floor"]

log = structlog.get_logger("shared.messaging.upkeep")


class Kept(Protocol):
    """What `Upkeep` needs of the consumer it keeps: its identity and options, what it is
    handling, and the two ways to take over an entry (handle it here, or dead-letter it).
    `Consumer` is one; a test can pass anything of this shape."""

    @property
    def transport(self) -> Transport:
        """Where the consumer's streams live."""
        ...

    @property
    def streams(self) -> Sequence[str]:
        """The streams consumed."""
        ...

    @property
    def specs(self) -> Mapping[str, registry.QueueSpec]:
        """Each stream's registry entry."""
        ...

    @property
    def group(self) -> str:
        """The consumer's group."""
        ...

    @property
    def name(self) -> str:
        """The consumer's name within its group."""
        ...

    @property
    def options(self) -> ConsumerOptions:
        """Its tuning (reclaim idle time, trim interval, observer cap, attempts)."""
        ...

    @property
    def metrics(self) -> Metrics:
        """Where the pending, lag and age gauges go."""
        ...

    @property
    def inflight(self) -> Mapping[tuple[str, str], object]:
        """(stream, entry id) of every entry being handled here."""
        ...

    @property
    def stopping(self) -> bool:
        """True once the consumer was asked to stop (nothing new is taken then)."""
        ...

    @property
    def free_slots(self) -> int:
        """How many more entries it may handle right now."""
        ...

    def required_groups(self, stream: str) -> tuple[str, ...]:
        """Every group that must acknowledge an entry of `stream` before it is deleted."""
        ...

    def spawn(self, entry: Entry, *, attempt: int) -> None:
        """Handle `entry` (claimed here) as delivery number `attempt`."""
        ...

    async def dead_letter(self, entry: Entry, attempt: int, *, reason: str, error: str) -> None:
        """Move `entry` to its dead-letter stream and acknowledge it."""
        ...


def _next_id(entry_id: str) -> str:
    ms, seq = parse_id(entry_id)
    return f"{ms}-{seq + 1}"


def _min_id(ids: list[str]) -> str:
    return min(ids, key=parse_id)


async def trim_floor(consumer: Kept, stream: str, *, observer_cap: int) -> str | None:
    """The id below which every required group has acknowledged every entry (None: keep all)."""
    transport = consumer.transport
    groups = {info.name: info for info in await transport.groups(stream)}
    spec = consumer.specs[stream]
    observers = {o.value for o in spec.observers}
    floors: list[str] = []
    for name in consumer.required_groups(stream):
        info = groups.get(name)
        if info is None:
            if name in observers:
                continue  # an observer that never started does not pin entries
            return None  # a required group that does not exist yet: keep everything
        floor = _next_id(info.last_delivered_id)
        if info.pending:
            pending = await transport.pending(stream, name)
            if pending.oldest_id is not None:
                floor = _min_id([floor, pending.oldest_id])
        if name in observers and name != consumer.group:
            newest = await transport.revrange(stream, count=observer_cap)
            if len(newest) == observer_cap:
                floor = max(floor, newest[-1].entry_id, key=parse_id)
        floors.append(floor)
    return _min_id(floors) if floors else None


class Upkeep:
    """The periodic duties of one consumer."""

    def __init__(self, consumer: Kept) -> None:
        self.consumer = consumer
        self.tick_s = max(consumer.options.reclaim_idle_ms / 3000, 0.05)
        self._cursors: dict[str, str] = dict.fromkeys(consumer.streams, "0-0")
        self._last_trim = 0.0

    async def run(self) -> None:
        """Tick until cancelled; connection losses back off, never stop the loop."""
        backoff = Backoff(base_s=0.1, max_s=5.0)
        while True:  # the first turn at once: a restart here takes over its dead at once
            delay_s = self.tick_s
            try:
                await self.renew_leases()
                await self.reclaim_dead_here()
                await self.reclaim()
                if time.monotonic() - self._last_trim >= self.consumer.options.trim_interval_s:
                    self._last_trim = time.monotonic()
                    await self.trim()
                backoff.reset()
            except TransportNoGroupError:
                delay_s += backoff.next_delay_s()
            except TransportConnectionError as exc:
                log.warning("upkeep_redis_unavailable", error=str(exc))
                delay_s += backoff.next_delay_s()
            except Exception:
                log.exception("upkeep_failed")
                delay_s += backoff.next_delay_s()
            raise_if_cancelling()  # the turn's Redis calls may have absorbed it
            await asyncio.sleep(delay_s)

    async def renew_leases(self) -> None:
        """Reset the idle time of every entry being handled here."""
        consumer = self.consumer
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id in list(consumer.inflight):
            by_stream.setdefault(stream, []).append(entry_id)
        for stream, ids in by_stream.items():
            owned = await consumer.transport.renew(stream, consumer.group, consumer.name, ids)
            # an entry acknowledged meanwhile is no longer pending: only report live handlers
            lost = {i for i in set(ids) - set(owned) if (stream, i) in consumer.inflight}
            if lost:
                log.warning("lease_lost", queue=stream, entry_ids=sorted(lost))

    async def reclaim_dead_here(self) -> None:
        """Claim at once what consumers of this host whose process is gone held (a process
        that crashed and was started again): no need to wait out the reclaim idle time."""
        consumer = self.consumer
        for stream in consumer.streams:
            holders = (await consumer.transport.pending(stream, consumer.group)).consumers
            for name in holders:
                if name == consumer.name or not consumer_died_here(name):
                    continue
                if consumer.stopping or consumer.free_slots == 0:
                    return
                ids = await consumer.transport.pending_ids(
                    stream, consumer.group, name, consumer.free_slots
                )
                for entry_id in ids:
                    entry = await consumer.transport.claim(
                        stream, consumer.group, consumer.name, entry_id
                    )
                    if entry is not None:
                        await self._take(entry, dead=name)

    async def reclaim(self) -> None:
        """Claim entries that idled past the reclaim time in another (dead) consumer's hands."""
        consumer = self.consumer
        for stream in consumer.streams:
            if consumer.stopping or consumer.free_slots == 0:
                return
            cursor, entries = await consumer.transport.autoclaim(
                stream,
                consumer.group,
                consumer.name,
                min_idle_ms=consumer.options.reclaim_idle_ms,
                start=self._cursors[stream],
                count=consumer.free_slots,
            )
            self._cursors[stream] = cursor
            for entry in entries:
                await self._take(entry, dead=None)

    async def _take(self, entry: Entry, *, dead: str | None) -> None:
        """Handle a claimed entry here, or dead-letter it when its deliveries are exhausted."""
        consumer = self.consumer
        if (entry.stream, entry.entry_id) in consumer.inflight:
            return
        count = await consumer.transport.delivery_count(
            entry.stream, consumer.group, entry.entry_id
        )
        log.info(
            "reclaimed", queue=entry.stream, entry_id=entry.entry_id, deliveries=count, dead=dead
        )
        if entry.fields is not None and count > consumer.options.max_attempts:
            await consumer.dead_letter(
                entry,
                count,
                reason="exhausted",
                error=f"delivered {count} times without an acknowledgement",
            )
            return
        consumer.spawn(entry, attempt=max(count, 1))

    async def trim(self) -> None:
        """Trim what every required group acknowledged; update the gauges."""
        consumer = self.consumer
        metrics = consumer.metrics
        for stream in consumer.streams:
            floor = await trim_floor(consumer, stream, observer_cap=consumer.options.observer_cap)
            if floor is not None:
                removed = await consumer.transport.trim_min_id(stream, floor)
                if removed:
                    log.info("trimmed", queue=stream, removed=removed, min_id=floor)
            spec_name = consumer.specs[stream].name
            infos = await consumer.transport.groups(stream)
            if not any(info.name == consumer.group for info in infos):
                self._last_trim = 0.0  # its group not made yet: sample again next tick
            for info in infos:
                if info.name != consumer.group:
                    continue
                labels = (spec_name, info.name)
                metrics.pending.labels(*labels).set(info.pending)
                if info.lag is not None:
                    metrics.lag.labels(*labels).set(info.lag)
                pending = await consumer.transport.pending(stream, info.name)
                age_s = 0.0
                if pending.oldest_id is not None:
                    age_s = max(time.time() - parse_id(pending.oldest_id)[0] / 1000, 0.0)
                metrics.oldest_pending_age_s.labels(*labels).set(age_s)
