"""A warm wrapper: started ahead of any task, it waits for its binding, then serves as usual.

The worker-manager's pool (`services/worker_manager/pool.py`) starts wrappers with
`WORKER_WARM=1` and only the variables needed to reach Redis: the interpreter has imported
everything, connected, and reported `warm` in its registry hash before any task exists. A
`create` then claims it and pushes the task's environment (workspace, branch, scoped key,
agent settings) onto the list `WORKER_BIND_KEY`; the wrapper pops it (so it leaves Redis at
once), replaces its environment with it and goes on as a freshly started wrapper would. A
wrapper is bound once: afterwards its registry status never goes back to `warm`.

What does not depend on the task is done while warm (`__main__._warm_then_serve`): the
imports (then frozen out of the collector's passes), the input stream's consumer group, the
reporter's scripts; the binding is served on the same event loop, and on the same Redis
connection when its address did not change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

__all__ = ["SOCKET_TIMEOUT_S", "WarmEnv", "redis_client", "wait_for_binding"]

log = structlog.get_logger("services.worker_wrapper")

IDLE_BLOCK_S = 4.5
"""How long one idle read of the binding list blocks (unless the heartbeat timeout is short)."""
SOCKET_TIMEOUT_S = 30.0
"""The wrapper's Redis client reads with this timeout, far beyond any of its blocking reads
(a few seconds each). redis-py's default (5 s) left a BLPOP of 4.5 s half a second: a
wrapper whose loop ran late (a busy machine, a warm worker's lowest CPU priority) hit the
client's timeout after Redis had popped its binding, which was then lost (and the `go` that
followed it taken for a binding)."""

_READY = """
if redis.call('HGET', KEYS[1], 'status') ~= 'warming' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'warm', 'heartbeat_at', ARGV[1])
return 1
"""
_BEAT = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'warm' and status ~= 'starting' then return 0 end
redis.call('HSET', KEYS[1], 'heartbeat_at', ARGV[1])
return 1
"""


class WarmEnv:
    """The variables a warm wrapper reads before its binding."""

    def __init__(self, env: dict[str, str]) -> None:
        try:
            self.worker_id = env["WORKER_ID"]
            self.redis_url = env["WORKER_REDIS_URL"]
            self.registry_key = env["WORKER_REGISTRY_KEY"]
            self.bind_key = env["WORKER_BIND_KEY"]
        except KeyError as exc:
            raise ValueError(f"a warm wrapper needs {exc.args[0]} in its environment") from None
        try:
            self.interval_s = float(env.get("WORKER_HEARTBEAT_INTERVAL_S", "2.0"))
            self.timeout_s = float(env.get("WORKER_HEARTBEAT_TIMEOUT_S", "30"))
            self.orphan_after_s = float(env.get("WORKER_ORPHAN_AFTER_S", "600"))
        except ValueError:
            raise ValueError(
                "WORKER_HEARTBEAT_INTERVAL_S, WORKER_HEARTBEAT_TIMEOUT_S and "
                "WORKER_ORPHAN_AFTER_S must be numbers of seconds"
            ) from None
        self.block_s = max(self.interval_s, min(IDLE_BLOCK_S, self.timeout_s / 3))
        """How long one read of the binding list blocks (a heartbeat after each)."""


async def wait_for_binding(
    warm: WarmEnv, redis: aioredis.Redis | None = None
) -> dict[str, str] | None:
    """Report `warm`, heartbeat, and wait for the binding; answer its environment, or None
    when the wrapper should exit instead (SIGTERM, its record no longer warm, Redis gone).
    `redis`: the client to use (the caller's, kept open for serving), else one of its own."""
    own_client = redis is None
    if redis is None:
        redis = redis_client(warm.redis_url)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        if not await redis.eval(_READY, 1, warm.registry_key, str(time.time())):
            log.warning("warm_worker_not_warming", worker_id=warm.worker_id)
            return None
        log.info("warm_worker_ready", worker_id=warm.worker_id)
        last_ok = time.monotonic()
        while not stopping.is_set():
            popping = asyncio.create_task(_pop(redis, warm.bind_key, warm.block_s))
            stop_wait = asyncio.create_task(stopping.wait())
            await asyncio.wait({popping, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            if not popping.done():
                popping.cancel()
                with contextlib.suppress(asyncio.CancelledError, RedisError):
                    await popping
                break
            try:
                popped = popping.result()
                if popped is not None:
                    return _parse(popped[1])
                live = bool(await redis.eval(_BEAT, 1, warm.registry_key, str(time.time())))
                last_ok = time.monotonic()
            except (RedisError, OSError) as exc:
                log.warning("warm_worker_redis_failed", error=str(exc))
                live = time.monotonic() - last_ok < warm.orphan_after_s
                await asyncio.sleep(min(warm.interval_s, 1.0))
            if not live:
                log.info("warm_worker_dropped", worker_id=warm.worker_id)
                return None
        return None
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if own_client:
            await redis.aclose()


def redis_client(url: str) -> aioredis.Redis:
    """The wrapper's Redis client (`SOCKET_TIMEOUT_S`)."""
    return aioredis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT_S)


async def _pop(redis: aioredis.Redis, key: str, timeout_s: float) -> Any:
    return await redis.blpop([key], timeout=timeout_s)


def _parse(payload: bytes | str) -> dict[str, str]:
    env = json.loads(payload)
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ValueError("the binding of a warm wrapper must be a JSON object of strings")
    return env
