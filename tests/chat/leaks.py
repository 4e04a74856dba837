"""Where a planted secret must not be: every Redis key (streams, hashes, lists, sets,
strings: queue payloads, the conversation's pending questions, progress events) and text."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from shared.api_client import ApiClient
from shared.secret_box import secret_box_from_settings
from shared.settings import Settings


async def redis_places(redis: aioredis.Redis, needle: str) -> list[str]:
    """The Redis keys whose content holds `needle` (none, when nothing leaked)."""
    wanted = needle.encode()
    found: list[str] = []
    async for raw_key in redis.scan_iter(count=500):
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        kind = await redis.type(raw_key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        parts: list[Any] = [key.encode()]
        if kind == "string":
            parts.append(await redis.get(raw_key) or b"")
        elif kind == "hash":
            for field, value in (await redis.hgetall(raw_key)).items():
                parts += [field, value]
        elif kind == "list":
            parts += await redis.lrange(raw_key, 0, -1)
        elif kind == "set":
            parts += list(await redis.smembers(raw_key))
        elif kind == "zset":
            parts += list(await redis.zrange(raw_key, 0, -1))
        elif kind == "stream":
            for _, fields in await redis.xrange(raw_key) or []:
                for field, value in (fields or {}).items():
                    parts += [field, value]
        if any(wanted in _raw(part) for part in parts):
            found.append(key)
    return found


def _raw(part: Any) -> bytes:
    return part if isinstance(part, bytes) else str(part).encode()


async def stored_value(settings: Settings, service_key: str, project_id: str, name: str) -> str:
    """A project's secret as infra-service would open it (service credential, key ring)."""
    async with ApiClient(settings.api.base_url, key=service_key) as api:
        sealed = await api.sealed_secrets(project_id)
    return secret_box_from_settings(settings).open(sealed.sealed[name])
