"""A Redis ACL user per worker (`WorkerManagerSettings.redis_acl`).

The wrapper's Redis credential sits next to untrusted agent code. With its own ACL user the
worker can reach only what its wrapper needs: its input stream (consumer group, reads,
acks, claims), that stream's dead letters, its output stream, its registry hash, its
idempotency keys and its task's progress stream, with the stream, hash and string commands
that work needs and nothing else (no KEYS/SCAN, no pub/sub, no CONFIG, ACL or CLIENT KILL).
The user is created before the worker starts and deleted when it stops or fails; users of
workers that are no longer live are swept by the monitor.

ACL users live in the server's memory: a Redis restart without an ACL file forgets them, so
this is off by default (`orchestrator up` restarts its private Redis and adopts workers).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit, urlunsplit

import redis.asyncio as aioredis
import structlog

from services.worker_manager.keys import bind_key, registry_key, started_key
from shared import registry
from shared.messaging.keys import idempotency_key, progress_stream
from shared.registry import dead_letter_stream

__all__ = ["USER_PREFIX", "WorkerRedisUsers", "worker_rules", "worker_username"]

log = structlog.get_logger("services.worker_manager")

USER_PREFIX = "worker-"
_COMMANDS = (
    # streams: the input's consumer group, the output, progress, dead letters
    "xreadgroup",
    "xread",
    "xadd",
    "xack",
    "xclaim",
    "xautoclaim",
    "xpending",
    "xrange",
    "xrevrange",
    "xdel",
    "xtrim",
    "xlen",
    "xinfo",
    "xgroup",
    # the registry hash and idempotency keys
    "hget",
    "hset",
    "hgetall",
    "hmget",
    "get",
    "set",
    "del",
    "exists",
    "expire",
    "pexpire",
    # a warm worker's binding, its `go` and its word back (pool.py)
    "blpop",
    "lpop",
    "rpush",
    # the messaging runtime's Lua scripts, and the connection itself
    "evalsha",
    "eval",
    "script|load",
    "script|exists",
    "ping",
    "client|setname",
)


def worker_username(worker_id: str) -> str:
    """The ACL user of a worker."""
    return f"{USER_PREFIX}{worker_id}"


def _glob_literal(text: str) -> str:
    """`text` with Redis glob characters escaped."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


def worker_rules(worker_id: str, task_id: str | None) -> tuple[list[str], list[str]]:
    """The ACL rules of a worker's user: its commands, and its key patterns."""
    input_stream = registry.get("worker:{id}:input").format(id=worker_id)
    output_stream = registry.get("worker:{id}:output").format(id=worker_id)
    keys = [
        input_stream,
        output_stream,
        dead_letter_stream(input_stream),
        registry_key(worker_id),
        bind_key(worker_id),
        started_key(worker_id),
    ]
    if task_id:
        keys.append(progress_stream(task_id))
    patterns = [_glob_literal(key) for key in keys]
    patterns.append(_glob_literal(idempotency_key(f"worker-wrapper:{worker_id}:")) + "*")
    return ["-@all", *(f"+{command}" for command in _COMMANDS)], patterns


def with_credentials(url: str, username: str, password: str) -> str:
    """`url` with `username:password` as its user info (any given there replaced)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


class WorkerRedisUsers:
    """Creates, deletes and sweeps the workers' ACL users (with the manager's own client,
    which needs the ACL commands)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def issue(self, worker_id: str, task_id: str | None, url: str) -> str:
        """Create (or reset) the worker's user with a new password; answer `url` with its
        credentials."""
        password = secrets.token_urlsafe(32)
        username = worker_username(worker_id)
        commands, keys = worker_rules(worker_id, task_id)
        await self.redis.acl_setuser(
            username,
            enabled=True,
            passwords=[f"+{password}"],
            commands=commands,
            keys=keys,
            reset=True,
            reset_keys=True,
            reset_channels=True,
        )
        log.info("worker_redis_user_created", worker_id=worker_id, user=username)
        return with_credentials(url, username, password)

    async def release(self, worker_id: str) -> None:
        """Delete the worker's user and close its connections (nothing when it has none)."""
        username = worker_username(worker_id)
        if await self.redis.acl_deluser(username):
            log.info("worker_redis_user_deleted", worker_id=worker_id, user=username)

    async def sweep(self, is_live: Callable[[str], Awaitable[bool]]) -> int:
        """Delete the users of workers that `is_live` says are gone; returns how many."""
        deleted = 0
        for raw in await self.redis.acl_users():
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            if name.startswith(USER_PREFIX) and not await is_live(name[len(USER_PREFIX) :]):
                await self.release(name[len(USER_PREFIX) :])
                deleted += 1
        return deleted
