"""The registry of workers in Redis: one hash per worker plus two index sets.

`REGISTRY_INDEX` holds every worker id the registry knows (finished ones until their record
expires); `ACTIVE_INDEX` only the unfinished ones (`UNFINISHED_STATUSES`): the monitor's
pass reads that one, so its cost follows the workers that run, not the tasks done. A record
enters it when written (`put`) and leaves it when finished (`finish`, `fail_if_live`,
`retire_warm`); a reader that finds a finished or expired record in it removes it, and
`reindex` (on the manager's start) rebuilds it from `REGISTRY_INDEX`.

Fields the wrapper writes itself (only while the manager has not stopped or failed the
worker): `status` (`running` ⇄ `busy`), `heartbeat_at`, `last_activity_at`. Everything else
is the manager's. Times are Unix seconds (floats). Records of stopped or failed workers
expire after `record_ttl_s`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

import redis.asyncio as aioredis
from pydantic import BaseModel

from services.worker_manager.keys import (
    ACTIVE_INDEX,
    REGISTRY_INDEX,
    create_request_key,
    registry_key,
)

__all__ = [
    "LIVE_STATUSES",
    "UNFINISHED_STATUSES",
    "WARM_STATUSES",
    "WorkerRecord",
    "WorkerRegistry",
    "WorkerStatus",
    "as_text",
]

WorkerStatus = Literal["warming", "warm", "starting", "running", "busy", "stopped", "failed"]
LIVE_STATUSES: frozenset[str] = frozenset({"starting", "running", "busy"})
WARM_STATUSES: frozenset[str] = frozenset({"warming", "warm"})
"""A pooled worker not bound to any task yet (`pool.py`): `warming` while its wrapper starts,
`warm` once it waits for its binding. Neither is live: nothing can be sent to it."""
UNFINISHED_STATUSES: frozenset[str] = LIVE_STATUSES | WARM_STATUSES
"""A worker in one of these is in `ACTIVE_INDEX`; `stopped` and `failed` are final."""
_CLAIM_WARM = """
if redis.call('HGET', KEYS[1], 'status') ~= 'warm' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'starting')
return 1
"""
_FAIL_IF_LIVE = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'starting' and status ~= 'running' and status ~= 'busy' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'failed', 'error', ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""
_RETIRE_WARM = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'warm' and status ~= 'warming' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'error', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


class WorkerRecord(BaseModel):
    """One worker as the registry knows it."""

    worker_id: str
    name: str
    agent: str
    """The agent the create command asked for (`claude-code`, `factory-droid`)."""
    adapter: str
    """The adapter that really runs (`claude-code`, `factory-droid`, `command`, `builtin`)."""
    runtime: str
    manager_id: str
    status: WorkerStatus = "starting"
    profile: str = "developer"
    owner: str = ""
    task_id: str = ""
    request_id: str = ""
    """The create command's request id (idempotency)."""
    runtime_ref: str = ""
    """Process `pid:create_time` or container id."""
    workspace: str = ""
    session_dir: str = ""
    keep_session: bool = False
    created_at: float = 0.0
    last_activity_at: float = 0.0
    heartbeat_at: float = 0.0
    error: str = ""

    @property
    def is_live(self) -> bool:
        """True while the worker is starting, running or busy."""
        return self.status in LIVE_STATUSES

    def to_hash(self) -> dict[Any, Any]:
        """The record as Redis hash fields."""
        return {key: _encode(value) for key, value in self.model_dump().items()}

    @classmethod
    def from_hash(cls, fields: Mapping[Any, Any]) -> WorkerRecord:
        """A record from Redis hash fields."""
        decoded = {as_text(k): as_text(v) for k, v in fields.items()}
        decoded["keep_session"] = str(decoded.get("keep_session") == "1")
        return cls.model_validate(decoded)


def _encode(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def as_text(value: bytes | str) -> str:
    """A Redis reply as text."""
    return value.decode() if isinstance(value, bytes) else value


class WorkerRegistry:
    """Reads and writes worker records."""

    def __init__(self, redis: aioredis.Redis, *, record_ttl_s: int = 86400) -> None:
        self.redis = redis
        self.record_ttl_s = record_ttl_s

    async def put(self, record: WorkerRecord, *, request: tuple[str, int] | None = None) -> None:
        """Write a whole record and index it; with `request` (a create command's request id,
        a TTL in s) also record, in the same round trip, that the command made this worker."""
        key = registry_key(record.worker_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            if request is not None:
                request_id, ttl_s = request
                pipe.set(create_request_key(request_id), record.worker_id, ex=ttl_s)
            pipe.hset(key, mapping=record.to_hash())
            pipe.persist(key)
            pipe.sadd(REGISTRY_INDEX, record.worker_id)
            if record.status in UNFINISHED_STATUSES:
                pipe.sadd(ACTIVE_INDEX, record.worker_id)
            else:
                pipe.srem(ACTIVE_INDEX, record.worker_id)
            await pipe.execute()

    async def get(self, worker_id: str) -> WorkerRecord | None:
        """The record of a worker, or None."""
        fields = await self.redis.hgetall(registry_key(worker_id))
        return WorkerRecord.from_hash(fields) if fields else None

    async def update(self, worker_id: str, **fields: str | float | bool) -> None:
        """Set some fields of an existing record."""
        mapping: dict[Any, Any] = {key: _encode(value) for key, value in fields.items()}
        await self.redis.hset(registry_key(worker_id), mapping=mapping)

    async def finish(self, worker_id: str, status: WorkerStatus, *, error: str = "") -> None:
        """Mark a worker stopped or failed; its record expires after `record_ttl_s`."""
        key = registry_key(worker_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"status": status, "error": error})
            pipe.expire(key, self.record_ttl_s)
            pipe.srem(ACTIVE_INDEX, worker_id)
            await pipe.execute()

    async def fail_if_live(self, worker_id: str, error: str) -> bool:
        """Mark a live worker failed, atomically; False when it was already stopped/failed."""
        done = await self.redis.eval(
            _FAIL_IF_LIVE, 1, registry_key(worker_id), error, str(self.record_ttl_s)
        )
        if done:
            await self.redis.srem(ACTIVE_INDEX, worker_id)
        return bool(done)

    async def retire_warm(self, worker_id: str, status: WorkerStatus, *, error: str) -> bool:
        """Finish a worker that is still `warming` or `warm` (`status`: stopped or failed),
        atomically: False when it is not (a create claimed it meanwhile: it is the create's
        now, and must be left alone)."""
        done = await self.redis.eval(
            _RETIRE_WARM, 1, registry_key(worker_id), status, error, str(self.record_ttl_s)
        )
        if done:
            await self.redis.srem(ACTIVE_INDEX, worker_id)
        return bool(done)

    async def claim_warm(self, worker_id: str) -> bool:
        """Turn a `warm` worker into a `starting` one, atomically: True for exactly one caller,
        and never again for that worker (no status leads back to `warm`)."""
        return bool(await self.redis.eval(_CLAIM_WARM, 1, registry_key(worker_id)))

    async def touch(self, worker_id: str) -> None:
        """Record activity now (a command for the worker)."""
        await self.update(worker_id, last_activity_at=time.time())

    async def all(self) -> list[WorkerRecord]:
        """Every known record, oldest first; ids whose record expired leave the index."""
        records, gone = await self._read(REGISTRY_INDEX)
        if gone:
            await self.redis.srem(REGISTRY_INDEX, *gone)
        return records

    async def active(self) -> list[WorkerRecord]:
        """The records of the unfinished workers (`UNFINISHED_STATUSES`), oldest first, in
        two round trips whatever their number; ids whose record expired or is finished
        leave `ACTIVE_INDEX`."""
        records, gone = await self._read(ACTIVE_INDEX)
        unfinished = [record for record in records if record.status in UNFINISHED_STATUSES]
        gone += [record.worker_id for record in records if record.status not in UNFINISHED_STATUSES]
        if gone:
            await self.redis.srem(ACTIVE_INDEX, *gone)
        return unfinished

    async def active_ids(self) -> set[str]:
        """The ids in `ACTIVE_INDEX` (one command; may hold a worker finished a moment ago)."""
        return {as_text(i) for i in await self.redis.smembers(ACTIVE_INDEX)}

    async def reindex(self) -> int:
        """Rebuild `ACTIVE_INDEX` from every known record (a manager's start: records written
        before the set existed, or a set lost); answer how many unfinished workers it holds."""
        records = await self.all()
        unfinished = [r.worker_id for r in records if r.status in UNFINISHED_STATUSES]
        finished = [r.worker_id for r in records if r.status not in UNFINISHED_STATUSES]
        async with self.redis.pipeline(transaction=False) as pipe:
            if unfinished:
                pipe.sadd(ACTIVE_INDEX, *unfinished)
            if finished:
                pipe.srem(ACTIVE_INDEX, *finished)
            await pipe.execute()
        return len(unfinished)

    async def _read(self, index: str) -> tuple[list[WorkerRecord], list[str]]:
        """The records of an index's ids, oldest first, read in one pipeline, and the ids
        whose record is gone."""
        ids = sorted(as_text(i) for i in await self.redis.smembers(index))
        if not ids:
            return [], []
        async with self.redis.pipeline(transaction=False) as pipe:
            for worker_id in ids:
                pipe.hgetall(registry_key(worker_id))
            replies = await pipe.execute()
        records: list[WorkerRecord] = []
        gone: list[str] = []
        for worker_id, fields in zip(ids, replies, strict=True):
            if fields:
                records.append(WorkerRecord.from_hash(fields))
            else:
                gone.append(worker_id)
        return sorted(records, key=lambda r: r.created_at), gone

    async def find_by_request(self, request_id: str) -> WorkerRecord | None:
        """The worker a create command with this request id made, if any."""
        for record in await self.all():
            if record.request_id == request_id:
                return record
        return None
