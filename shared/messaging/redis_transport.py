"""`Transport` on a real Redis (6.2+; 7.0 recommended) through `redis.asyncio`."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from types import TracebackType
from typing import Any, cast

import pydantic_core
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from shared.messaging.cancel import raise_if_cancelling
from shared.messaging.envelope import as_str, envelope_fields
from shared.messaging.scripts import (
    ACK_MANY_SCRIPT,
    ACK_SCRIPT,
    ADD_MANY_SCRIPT,
    READ_NOW_SCRIPT,
    RECLAIM_SCRIPT,
    RENEW_SCRIPT,
    REPLAY_SCRIPT,
)
from shared.messaging.transport import (
    AckBatch,
    Entry,
    Fields,
    GroupInfo,
    PendingInfo,
    TransportConnectionError,
    TransportNoGroupError,
    parse_id,
)

__all__ = ["RedisTransport"]

_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_SOCKET_MARGIN_MS = 500
_ADD_MANY_CHUNK = 1_000
"""Entries per `ADD_MANY_SCRIPT` call (a script blocks the server while it runs)."""


class _Translated:
    """`with _translated:` maps the client's errors to the transport's: connection loss and
    NOGROUP. A plain (not generator-based) context manager: it wraps every command."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            return
        if isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)):
            raise_if_cancelling()  # a cancellation the client turned into a connection error
            raise TransportConnectionError(f"{type(exc).__name__}: {exc}") from exc
        # Redis 7 passes a script's NOGROUP on as it is, 6.2 wraps it in "Error running script"
        if isinstance(exc, redis_errors.ResponseError) and "NOGROUP" in str(exc):
            raise TransportNoGroupError(str(exc)) from exc


_translated = _Translated()


def _entries(stream: str, items: Any) -> list[Entry]:
    """Entries from a parsed `[(id, {field: value}), ...]` list (None fields: deleted)."""
    return [
        Entry(stream, as_str(entry_id), None if fields is None else envelope_fields(fields))
        for entry_id, fields in items or ()
        if entry_id is not None
    ]


def _stream_reply(reply: Any) -> list[Entry]:
    """Entries of an XREAD/XREADGROUP reply (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    pairs = reply.items() if isinstance(reply, dict) else reply
    found: list[Entry] = []
    for stream, items in pairs:
        if isinstance(items, list) and len(items) == 1 and isinstance(items[0], list):
            items = items[0]  # RESP3 wraps each stream's entries in one more list
        found.extend(_entries(as_str(stream), items))
    return found


def _socket_timeout_s(client: aioredis.Redis) -> float | None:
    """The client's socket timeout: as configured, else its connection class's default
    (redis-py 8 reads with a 5 s timeout when none is given)."""
    pool = client.connection_pool
    if "socket_timeout" in pool.connection_kwargs:
        configured = pool.connection_kwargs["socket_timeout"]
        return None if configured is None else float(configured)
    for klass in pool.connection_class.__mro__:  # the first __init__ that names it
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameter = inspect.signature(init).parameters.get("socket_timeout")
        if parameter is not None:
            default = parameter.default
            return float(default) if isinstance(default, int | float) else None
    return None


class RedisTransport:
    """Stream operations on one `redis.asyncio.Redis` client (its pool, its timeouts)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._ack = client.register_script(ACK_SCRIPT)
        self._ack_many = client.register_script(ACK_MANY_SCRIPT)
        self._add_many = client.register_script(ADD_MANY_SCRIPT)
        self._read_now = client.register_script(READ_NOW_SCRIPT)
        self._reclaim = client.register_script(RECLAIM_SCRIPT)
        self._renew = client.register_script(RENEW_SCRIPT)
        self._replay = client.register_script(REPLAY_SCRIPT)
        self._delete_if = client.register_script(_DELETE_IF)
        socket_timeout = _socket_timeout_s(client)
        self.max_block_ms: int | None = (
            None
            if socket_timeout is None
            else max(int(socket_timeout * 1000) - _SOCKET_MARGIN_MS, 1)
        )
        """Longest blocking read that still answers before the client's socket timeout."""

    def _block(self, block_ms: int) -> int:
        return block_ms if self.max_block_ms is None else min(block_ms, self.max_block_ms)

    async def add(self, stream: str, fields: Fields, *, maxlen: int | None = None) -> str:
        with _translated:
            entry_id = await self.client.xadd(
                stream,
                fields,  # type: ignore[arg-type] # redis-py's field type is invariant
                maxlen=maxlen,
                approximate=True,
            )
        return as_str(entry_id)

    async def add_many(self, items: Sequence[tuple[str, Fields]]) -> list[str]:
        # one script call per run of entries with the same field names (every envelope has
        # the same two), at most `_ADD_MANY_CHUNK` long: its reply is one string, not one
        # element per entry, and each entry costs the client only its values to encode
        ids: list[str] = []
        start = 0
        while start < len(items):
            names = tuple(items[start][1])
            end = start + 1
            while end < len(items) and end - start < _ADD_MANY_CHUNK:
                if tuple(items[end][1]) != names:
                    break
                end += 1
            chunk = items[start:end]
            keys = list(dict.fromkeys(stream for stream, _ in chunk))
            index = {stream: number for number, stream in enumerate(keys, start=1)}
            args: list[str | int] = [len(names), *names]
            for stream, fields in chunk:
                args.append(index[stream])
                args.extend(fields.values())
            with _translated:
                reply = await self._add_many(keys=keys, args=args)
            ids.extend(as_str(reply).split(" "))
            start = end
        return ids

    async def add_capped_expiring(
        self, stream: str, fields: Fields, *, maxlen: int, ttl_s: int
    ) -> str:
        with _translated:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
                pipe.expire(stream, ttl_s)
                entry_id, _ = await pipe.execute()
        return as_str(entry_id)

    async def ensure_group(self, stream: str, group: str) -> None:
        try:
            with _translated:
                await self.client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis_errors.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    async def read_group(
        self, group: str, consumer: str, streams: Sequence[str], *, count: int, block_ms: int
    ) -> list[Entry]:
        positions: dict[Any, Any] = dict.fromkeys(streams, ">")
        with _translated:
            reply = await self.client.xreadgroup(
                group, consumer, positions, count=count, block=self._block(block_ms)
            )
        return _stream_reply(reply)

    async def read_group_now(
        self,
        group: str,
        consumer: str,
        streams: Sequence[str],
        *,
        count: int,
        acks: Sequence[AckBatch] = (),
    ) -> list[Entry]:
        index = {stream: number for number, stream in enumerate(streams, start=1)}
        batch = pydantic_core.to_json(
            [[index[stream], others, ids] for stream, ids, others in acks]
        )
        with _translated:
            reply = await self._read_now(keys=streams, args=[group, consumer, count, batch])
        if not reply:
            return []
        return [
            Entry(
                stream,
                entry_id,
                None if flat is None else dict(zip(flat[::2], flat[1::2], strict=True)),
            )
            for stream, entry_id, flat in pydantic_core.from_json(as_str(reply))
        ]

    async def read(
        self, positions: dict[str, str], *, count: int, block_ms: int | None
    ) -> list[Entry]:
        block = None if block_ms is None else self._block(block_ms)
        with _translated:
            reply = await self.client.xread(positions, count=count, block=block)  # type: ignore[arg-type]
        return _stream_reply(reply)

    async def ack(
        self,
        stream: str,
        group: str,
        entry_id: str,
        *,
        other_groups: Sequence[str] = (),
        dead_letter: tuple[str, Fields] | None = None,
    ) -> bool:
        dead_stream, dead_fields = dead_letter if dead_letter else (stream, {})
        flat = [item for pair in dead_fields.items() for item in pair]
        args: list[str | int] = [group, entry_id, len(flat), *flat, *other_groups]
        with _translated:
            reply = await self._ack(keys=[stream, dead_stream], args=args)
        return bool(reply[2])

    async def ack_many(
        self, stream: str, group: str, entry_ids: Sequence[str], *, other_groups: Sequence[str] = ()
    ) -> int:
        args: list[str | int] = [group, len(other_groups), *other_groups, *entry_ids]
        with _translated:
            return int(await self._ack_many(keys=[stream], args=args))

    async def renew(
        self, stream: str, group: str, consumer: str, entry_ids: Sequence[str]
    ) -> list[str]:
        if not entry_ids:
            return []
        with _translated:
            owned = await self._renew(keys=[stream], args=[group, consumer, *entry_ids])
        return [as_str(entry_id) for entry_id in owned]

    async def autoclaim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, start: str, count: int
    ) -> tuple[str, list[Entry]]:
        with _translated:
            last, claimed, _ = await self._reclaim(
                keys=[stream], args=[group, consumer, min_idle_ms, start, count]
            )
        entries = [
            Entry(
                stream,
                as_str(entry_id),
                envelope_fields(dict(zip(flat[::2], flat[1::2], strict=True))),
            )
            for entry_id, flat in claimed
        ]
        if not last:
            return "0-0", entries
        ms, seq = parse_id(as_str(last))
        return f"{ms}-{seq + 1}", entries

    async def claim(self, stream: str, group: str, consumer: str, entry_id: str) -> Entry | None:
        with _translated:
            reply = await self.client.xclaim(stream, group, consumer, 0, [entry_id])
            if reply and reply[0][0] is None:  # 6.2: the entry was deleted while pending
                await self.client.xack(stream, group, entry_id)
                return None
        found = _entries(stream, reply)
        return found[0] if found and found[0].fields is not None else None

    async def delivery_count(self, stream: str, group: str, entry_id: str) -> int:
        with _translated:
            rows = await self.client.xpending_range(stream, group, entry_id, entry_id, 1)
        return int(rows[0]["times_delivered"]) if rows else 0

    async def pending(self, stream: str, group: str) -> PendingInfo:
        with _translated:
            summary = await self.client.xpending(stream, group)
        oldest = summary.get("min")
        holders = {
            as_str(row["name"]): int(row["pending"]) for row in summary.get("consumers") or []
        }
        return PendingInfo(
            int(summary["pending"]), None if oldest is None else as_str(oldest), holders
        )

    async def pending_ids(self, stream: str, group: str, consumer: str, count: int) -> list[str]:
        with _translated:
            rows = await self.client.xpending_range(
                stream, group, min="-", max="+", count=count, consumername=consumer
            )
        return [as_str(cast("str | bytes", row["message_id"])) for row in rows]

    async def range(self, stream: str, *, start: str, end: str, count: int) -> list[Entry]:
        with _translated:
            items = await self.client.xrange(stream, min=start, max=end, count=count)
        return _entries(stream, items)

    async def revrange(self, stream: str, *, count: int) -> list[Entry]:
        with _translated:
            items = await self.client.xrevrange(stream, count=count)
        return _entries(stream, items)

    async def delete(self, stream: str, entry_ids: Sequence[str]) -> int:
        if not entry_ids:
            return 0
        with _translated:
            return int(await self.client.xdel(stream, *entry_ids))

    async def replay(self, dead_stream: str, dead_id: str, stream: str, fields: Fields) -> str:
        flat = [item for pair in fields.items() for item in pair]
        with _translated:
            new_id = await self._replay(keys=[dead_stream, stream], args=[dead_id, *flat])
        return as_str(new_id)

    async def groups(self, stream: str) -> list[GroupInfo]:
        try:
            with _translated:
                rows = await self.client.xinfo_groups(stream)
        except redis_errors.ResponseError as exc:
            if "no such key" in str(exc).lower():
                return []
            raise
        found: list[GroupInfo] = []
        for row in rows:
            info = {as_str(key): value for key, value in row.items()}
            lag = info.get("lag")
            found.append(
                GroupInfo(
                    name=as_str(info["name"]),
                    consumers=int(info.get("consumers", 0)),
                    pending=int(info.get("pending", 0)),
                    last_delivered_id=as_str(info.get("last-delivered-id", "0-0")),
                    lag=None if lag is None else int(lag),
                )
            )
        return found

    async def trim_min_id(self, stream: str, min_id: str) -> int:
        with _translated:
            return int(await self.client.xtrim(stream, minid=min_id, approximate=False))

    async def length(self, stream: str) -> int:
        with _translated:
            return int(await self.client.xlen(stream))

    async def set_nx(self, key: str, value: str, *, ttl_ms: int) -> bool:
        with _translated:
            return bool(await self.client.set(key, value, px=ttl_ms, nx=True))

    async def set(self, key: str, value: str, *, ttl_ms: int) -> None:
        with _translated:
            await self.client.set(key, value, px=ttl_ms)

    async def get(self, key: str) -> str | None:
        with _translated:
            value = await self.client.get(key)
        return None if value is None else as_str(value)

    async def delete_if(self, key: str, value: str) -> bool:
        with _translated:
            return bool(await self._delete_if(keys=[key], args=[value]))
