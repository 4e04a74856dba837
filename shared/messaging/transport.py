"""The few stream operations the runtime needs, as a Protocol.

`RedisTransport` (in `redis_transport.py`) implements them on a real server; the runtime
above them (publisher, consumer, dead letters, progress, request/reply, idempotency) reaches
Redis only through them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from shared.messaging.errors import MessagingError

__all__ = [
    "AckBatch",
    "Entry",
    "GroupInfo",
    "PendingInfo",
    "Transport",
    "TransportConnectionError",
    "TransportNoGroupError",
    "parse_id",
]

Fields = dict[str, str]

AckBatch = tuple[str, Sequence[str], Sequence[str]]
"""Acknowledgements for one stream: (stream, entry ids, the other required groups)."""


class TransportConnectionError(MessagingError):
    """The server could not be reached; the operation may be retried."""


class TransportNoGroupError(MessagingError):
    """The stream or its consumer group does not exist (e.g. lost in a restart)."""


@dataclass(frozen=True)
class Entry:
    """One stream entry: its stream, id and fields (None when the entry was deleted)."""

    stream: str
    entry_id: str
    fields: Fields | None


@dataclass(frozen=True)
class GroupInfo:
    """One consumer group of a stream, as XINFO GROUPS reports it."""

    name: str
    consumers: int
    pending: int
    last_delivered_id: str
    lag: int | None
    """Entries not yet delivered (None when the server cannot tell, e.g. Redis 6.2)."""


@dataclass(frozen=True)
class PendingInfo:
    """Summary of a group's pending entries."""

    count: int
    oldest_id: str | None
    consumers: dict[str, int] = field(default_factory=dict)
    """How many entries each consumer holds."""


def parse_id(entry_id: str) -> tuple[int, int]:
    """A stream id as a comparable pair: `"1700000000000-3"` → `(1700000000000, 3)`."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Transport(Protocol):
    """Stream and key operations, each one round trip (or one atomic script)."""

    async def add(self, stream: str, fields: Fields, *, maxlen: int | None = None) -> str:
        """XADD; returns the new entry id."""
        ...

    async def add_many(self, items: Sequence[tuple[str, Fields]]) -> list[str]:
        """XADD several entries in one round trip; returns their ids in order."""
        ...

    async def add_capped_expiring(
        self, stream: str, fields: Fields, *, maxlen: int, ttl_s: int
    ) -> str:
        """XADD with an approximate cap, and (re)set the stream's expiry, atomically."""
        ...

    async def ensure_group(self, stream: str, group: str) -> None:
        """Create the group at the stream's start (and the stream) unless it exists."""
        ...

    async def read_group(
        self, group: str, consumer: str, streams: Sequence[str], *, count: int, block_ms: int
    ) -> list[Entry]:
        """XREADGROUP `>`: up to `count` new entries, blocking at most `block_ms`."""
        ...

    async def read_group_now(
        self,
        group: str,
        consumer: str,
        streams: Sequence[str],
        *,
        count: int,
        acks: Sequence[AckBatch] = (),
    ) -> list[Entry]:
        """Acknowledge `acks` for the group as `ack_many` does, then `read_group` without
        blocking (nothing when nothing is new): one atomic step, one round trip. When it
        raises, none of the acknowledgements may be taken as done. The entries come back in
        a compact form that costs the client less to parse."""
        ...

    async def read(
        self, positions: dict[str, str], *, count: int, block_ms: int | None
    ) -> list[Entry]:
        """XREAD after each stream's position (no group); `block_ms=None` does not block."""
        ...

    async def ack(
        self,
        stream: str,
        group: str,
        entry_id: str,
        *,
        other_groups: Sequence[str] = (),
        dead_letter: tuple[str, Fields] | None = None,
    ) -> bool:
        """Acknowledge (after copying to a dead-letter stream, if given); delete the entry
        when no other required group still needs it. Atomic. Returns True when deleted."""
        ...

    async def ack_many(
        self, stream: str, group: str, entry_ids: Sequence[str], *, other_groups: Sequence[str] = ()
    ) -> int:
        """Acknowledge several entries in one atomic step, deleting each one no other required
        group still needs. Returns how many were deleted."""
        ...

    async def renew(
        self, stream: str, group: str, consumer: str, entry_ids: Sequence[str]
    ) -> list[str]:
        """Reset the idle time of entries this consumer still owns; returns those ids."""
        ...

    async def autoclaim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, start: str, count: int
    ) -> tuple[str, list[Entry]]:
        """Claim entries idle at least `min_idle_ms` in any consumer's hands, from the cursor
        `start` on, at most `count`, each counted as a delivery (XAUTOCLAIM as on Redis 7.0:
        an entry deleted meanwhile leaves the pending list and is not returned). Returns the
        next cursor ("0-0" once the pending list was gone through) and the entries."""
        ...

    async def claim(self, stream: str, group: str, consumer: str, entry_id: str) -> Entry | None:
        """XCLAIM one entry now (counts a delivery); None when it is no longer pending, or was
        deleted (it then leaves the pending list)."""
        ...

    async def delivery_count(self, stream: str, group: str, entry_id: str) -> int:
        """How many times the entry was delivered to the group (0 when not pending)."""
        ...

    async def pending(self, stream: str, group: str) -> PendingInfo:
        """Summary of the group's pending entries."""
        ...

    async def pending_ids(self, stream: str, group: str, consumer: str, count: int) -> list[str]:
        """The ids of up to `count` entries pending in `consumer`'s hands, oldest first."""
        ...

    async def range(self, stream: str, *, start: str, end: str, count: int) -> list[Entry]:
        """XRANGE."""
        ...

    async def revrange(self, stream: str, *, count: int) -> list[Entry]:
        """XREVRANGE from the newest entry."""
        ...

    async def delete(self, stream: str, entry_ids: Sequence[str]) -> int:
        """XDEL; returns how many were deleted."""
        ...

    async def replay(self, dead_stream: str, dead_id: str, stream: str, fields: Fields) -> str:
        """Atomically XADD `fields` to `stream` and XDEL `dead_id` from `dead_stream`."""
        ...

    async def groups(self, stream: str) -> list[GroupInfo]:
        """XINFO GROUPS (empty when the stream does not exist)."""
        ...

    async def trim_min_id(self, stream: str, min_id: str) -> int:
        """XTRIM MINID: remove entries older than `min_id`; returns how many."""
        ...

    async def length(self, stream: str) -> int:
        """XLEN."""
        ...

    async def set_nx(self, key: str, value: str, *, ttl_ms: int) -> bool:
        """SET NX PX; True when set."""
        ...

    async def set(self, key: str, value: str, *, ttl_ms: int) -> None:
        """SET PX."""
        ...

    async def get(self, key: str) -> str | None:
        """GET."""
        ...

    async def delete_if(self, key: str, value: str) -> bool:
        """Delete the key if it still holds `value` (atomic compare-and-delete)."""
        ...
