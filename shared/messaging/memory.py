"""An in-memory broker with the pending/ack/dead-letter semantics of Redis Streams.

`MemoryBus()` is a `Bus` on a `MemoryTransport`: the same publisher, consumer, retries,
dead letters, results, request/reply, progress and idempotency code paths, without a server.
Use it for fast unit tests of handlers; the runtime itself is tested on real Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.messaging.bus import Bus
from shared.messaging.metrics import Metrics
from shared.messaging.transport import (
    AckBatch,
    Entry,
    Fields,
    GroupInfo,
    PendingInfo,
    TransportNoGroupError,
    parse_id,
)
from shared.registry import Actor

__all__ = ["MemoryBus", "MemoryTransport"]


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


@dataclass
class _Pending:
    consumer: str
    delivered_ms: int
    count: int


@dataclass
class _Group:
    last_delivered: tuple[int, int] = (0, 0)
    pending: dict[str, _Pending] = field(default_factory=dict)


@dataclass
class _Stream:
    entries: dict[str, Fields] = field(default_factory=dict)
    last_id: tuple[int, int] = (0, 0)
    groups: dict[str, _Group] = field(default_factory=dict)


class MemoryTransport:
    """`Transport` on dicts, for one event loop."""

    def __init__(self) -> None:
        self.streams: dict[str, _Stream] = {}
        self.keys: dict[str, tuple[str, float]] = {}
        self._changed = asyncio.Condition()

    def _stream(self, name: str) -> _Stream:
        return self.streams.setdefault(name, _Stream())

    def _group(self, stream: str, group: str) -> _Group:
        found = self.streams.get(stream)
        if found is None or group not in found.groups:
            raise TransportNoGroupError(f"NOGROUP no group {group!r} on {stream!r}")
        return found.groups[group]

    def _append(self, stream: str, fields: Fields) -> str:
        s = self._stream(stream)
        ms = int(time.time() * 1000)
        s.last_id = (ms, 0) if ms > s.last_id[0] else (s.last_id[0], s.last_id[1] + 1)
        entry_id = f"{s.last_id[0]}-{s.last_id[1]}"
        s.entries[entry_id] = dict(fields)
        return entry_id

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _wait(self, block_ms: int) -> None:
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(block_ms / 1000):  # not wait_for: see cancel.py
                    await self._changed.wait()

    async def add(self, stream: str, fields: Fields, *, maxlen: int | None = None) -> str:
        entry_id = self._append(stream, fields)
        if maxlen is not None:
            self._cap(stream, maxlen)
        await self._notify()
        return entry_id

    def _cap(self, stream: str, maxlen: int) -> None:
        entries = self.streams[stream].entries
        for entry_id in list(entries)[: max(len(entries) - maxlen, 0)]:
            del entries[entry_id]

    async def add_many(self, items: Sequence[tuple[str, Fields]]) -> list[str]:
        ids = [self._append(stream, fields) for stream, fields in items]
        await self._notify()
        return ids

    async def add_capped_expiring(
        self, stream: str, fields: Fields, *, maxlen: int, ttl_s: int
    ) -> str:
        return await self.add(stream, fields, maxlen=maxlen)

    async def ensure_group(self, stream: str, group: str) -> None:
        self._stream(stream).groups.setdefault(group, _Group())

    def _deliver_new(
        self, group: str, consumer: str, streams: Sequence[str], count: int
    ) -> list[Entry]:
        found: list[Entry] = []
        for name in streams:
            g = self._group(name, group)
            s = self.streams[name]
            for entry_id, fields in s.entries.items():
                if len(found) >= count:
                    return found
                if parse_id(entry_id) <= g.last_delivered:
                    continue
                g.last_delivered = parse_id(entry_id)
                g.pending[entry_id] = _Pending(consumer, _now_ms(), 1)
                found.append(Entry(name, entry_id, dict(fields)))
        return found

    async def read_group(
        self, group: str, consumer: str, streams: Sequence[str], *, count: int, block_ms: int
    ) -> list[Entry]:
        found = self._deliver_new(group, consumer, streams, count)
        if not found and block_ms > 0:
            await self._wait(block_ms)
            found = self._deliver_new(group, consumer, streams, count)
        return found

    async def read_group_now(
        self,
        group: str,
        consumer: str,
        streams: Sequence[str],
        *,
        count: int,
        acks: Sequence[AckBatch] = (),
    ) -> list[Entry]:
        for stream, ids, others in acks:
            await self.ack_many(stream, group, ids, other_groups=others)
        return await self.read_group(group, consumer, streams, count=count, block_ms=0)

    def _after(self, positions: dict[str, str], count: int) -> list[Entry]:
        found: list[Entry] = []
        for name, position in positions.items():
            s = self.streams.get(name)
            for entry_id, fields in (s.entries if s else {}).items():
                if parse_id(entry_id) > parse_id(position) and len(found) < count:
                    found.append(Entry(name, entry_id, dict(fields)))
        return found

    async def read(
        self, positions: dict[str, str], *, count: int, block_ms: int | None
    ) -> list[Entry]:
        found = self._after(positions, count)
        if not found and block_ms:
            await self._wait(block_ms)
            found = self._after(positions, count)
        return found

    def _acked_by_all(self, s: _Stream, entry_id: str, groups: Sequence[str]) -> bool:
        for name in groups:
            g = s.groups.get(name)
            if g is not None and (parse_id(entry_id) > g.last_delivered or entry_id in g.pending):
                return False
        return True

    async def ack(
        self,
        stream: str,
        group: str,
        entry_id: str,
        *,
        other_groups: Sequence[str] = (),
        dead_letter: tuple[str, Fields] | None = None,
    ) -> bool:
        if dead_letter is not None:
            self._append(*dead_letter)
        s = self.streams.get(stream)
        if s is None:
            return False
        g = s.groups.get(group)
        if g is not None:
            g.pending.pop(entry_id, None)
        if self._acked_by_all(s, entry_id, other_groups):
            return s.entries.pop(entry_id, None) is not None
        return False

    async def ack_many(
        self, stream: str, group: str, entry_ids: Sequence[str], *, other_groups: Sequence[str] = ()
    ) -> int:
        deleted = 0
        for entry_id in entry_ids:
            deleted += await self.ack(stream, group, entry_id, other_groups=other_groups)
        return deleted

    async def renew(
        self, stream: str, group: str, consumer: str, entry_ids: Sequence[str]
    ) -> list[str]:
        g = self._group(stream, group)
        owned = []
        for entry_id in entry_ids:
            p = g.pending.get(entry_id)
            if p is not None and p.consumer == consumer:
                p.delivered_ms = _now_ms()
                owned.append(entry_id)
        return owned

    async def autoclaim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, start: str, count: int
    ) -> tuple[str, list[Entry]]:
        g = self._group(stream, group)
        s = self.streams[stream]
        found: list[Entry] = []
        for entry_id in sorted(g.pending, key=parse_id):
            p = g.pending[entry_id]
            if parse_id(entry_id) < parse_id(start) or _now_ms() - p.delivered_ms < min_idle_ms:
                continue
            if len(found) >= count:
                return entry_id, found
            if entry_id not in s.entries:
                del g.pending[entry_id]
                continue
            g.pending[entry_id] = _Pending(consumer, _now_ms(), p.count + 1)
            found.append(Entry(stream, entry_id, dict(s.entries[entry_id])))
        return "0-0", found

    async def claim(self, stream: str, group: str, consumer: str, entry_id: str) -> Entry | None:
        g = self._group(stream, group)
        p = g.pending.get(entry_id)
        fields = self.streams[stream].entries.get(entry_id)
        if p is None or fields is None:
            g.pending.pop(entry_id, None)  # deleted while pending: it leaves the list
            return None
        g.pending[entry_id] = _Pending(consumer, _now_ms(), p.count + 1)
        return Entry(stream, entry_id, dict(fields))

    async def delivery_count(self, stream: str, group: str, entry_id: str) -> int:
        p = self._group(stream, group).pending.get(entry_id)
        return 0 if p is None else p.count

    async def pending(self, stream: str, group: str) -> PendingInfo:
        g = self._group(stream, group)
        ids = sorted(g.pending, key=parse_id)
        holders: dict[str, int] = {}
        for p in g.pending.values():
            holders[p.consumer] = holders.get(p.consumer, 0) + 1
        return PendingInfo(len(ids), ids[0] if ids else None, holders)

    async def pending_ids(self, stream: str, group: str, consumer: str, count: int) -> list[str]:
        g = self._group(stream, group)
        mine = [i for i, p in g.pending.items() if p.consumer == consumer]
        return sorted(mine, key=parse_id)[:count]

    async def range(self, stream: str, *, start: str, end: str, count: int) -> list[Entry]:
        s = self.streams.get(stream)
        low = (0, 0) if start == "-" else parse_id(start)
        high = (2**64, 0) if end == "+" else parse_id(end)
        items = [(i, f) for i, f in (s.entries if s else {}).items() if low <= parse_id(i) <= high]
        return [Entry(stream, i, dict(f)) for i, f in items[:count]]

    async def revrange(self, stream: str, *, count: int) -> list[Entry]:
        s = self.streams.get(stream)
        items = list((s.entries if s else {}).items())[::-1][:count]
        return [Entry(stream, i, dict(f)) for i, f in items]

    async def delete(self, stream: str, entry_ids: Sequence[str]) -> int:
        s = self.streams.get(stream)
        return sum(1 for i in entry_ids if s is not None and s.entries.pop(i, None) is not None)

    async def replay(self, dead_stream: str, dead_id: str, stream: str, fields: Fields) -> str:
        await self.delete(dead_stream, [dead_id])
        return await self.add(stream, fields)

    async def groups(self, stream: str) -> list[GroupInfo]:
        s = self.streams.get(stream)
        if s is None:
            return []
        return [
            GroupInfo(
                name=name,
                consumers=len({p.consumer for p in g.pending.values()}),
                pending=len(g.pending),
                last_delivered_id=f"{g.last_delivered[0]}-{g.last_delivered[1]}",
                lag=sum(1 for i in s.entries if parse_id(i) > g.last_delivered),
            )
            for name, g in s.groups.items()
        ]

    async def trim_min_id(self, stream: str, min_id: str) -> int:
        s = self.streams.get(stream)
        old = [i for i in (s.entries if s else {}) if parse_id(i) < parse_id(min_id)]
        return await self.delete(stream, old)

    async def length(self, stream: str) -> int:
        s = self.streams.get(stream)
        return 0 if s is None else len(s.entries)

    def _live(self, key: str) -> str | None:
        found = self.keys.get(key)
        if found is None or found[1] < time.monotonic():
            self.keys.pop(key, None)
            return None
        return found[0]

    async def set_nx(self, key: str, value: str, *, ttl_ms: int) -> bool:
        if self._live(key) is not None:
            return False
        self.keys[key] = (value, time.monotonic() + ttl_ms / 1000)
        return True

    async def set(self, key: str, value: str, *, ttl_ms: int) -> None:
        self.keys[key] = (value, time.monotonic() + ttl_ms / 1000)

    async def get(self, key: str) -> str | None:
        return self._live(key)

    async def delete_if(self, key: str, value: str) -> bool:
        if self._live(key) == value:
            del self.keys[key]
            return True
        return False


class MemoryBus(Bus):
    """A `Bus` on an in-memory transport; pass one `MemoryTransport` to several buses to
    connect them (e.g. a requester and a responder)."""

    def __init__(
        self,
        *,
        actor: Actor | str,
        transport: MemoryTransport | None = None,
        consumer_name: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.memory = transport or MemoryTransport()
        super().__init__(
            actor=actor, transport=self.memory, consumer_name=consumer_name, metrics=metrics
        )
