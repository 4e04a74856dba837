"""Live figures of queues, for `orchestrator queues` and the gauges.

Per concrete stream: length, groups, lag (entries not yet delivered to the group), pending
(delivered, not acknowledged), age of the oldest pending entry, and dead letters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from shared import registry
from shared.messaging.envelope import as_str
from shared.messaging.transport import Transport, parse_id

__all__ = ["GroupStats", "QueueStats", "concrete_streams", "queue_stats"]


@dataclass(frozen=True)
class GroupStats:
    """One consumer group of a stream."""

    name: str
    consumers: int
    pending: int
    lag: int | None
    oldest_pending_age_s: float | None


@dataclass(frozen=True)
class QueueStats:
    """One concrete stream of a registry queue."""

    queue: str
    stream: str
    length: int
    groups: tuple[GroupStats, ...]
    dead_letters: int

    @property
    def pending(self) -> int:
        """Pending entries summed over the groups."""
        return sum(group.pending for group in self.groups)

    @property
    def lag(self) -> int | None:
        """The largest lag of a group (None when unknown)."""
        lags = [group.lag for group in self.groups if group.lag is not None]
        return max(lags) if lags else None

    @property
    def oldest_pending_age_s(self) -> float | None:
        """Age of the oldest pending entry over the groups."""
        ages = [g.oldest_pending_age_s for g in self.groups if g.oldest_pending_age_s is not None]
        return max(ages) if ages else None


def _glob_escape(text: str) -> str:
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


async def concrete_streams(client: aioredis.Redis, spec: registry.QueueSpec) -> list[str]:
    """The existing streams of a queue: its name, or every match of a pattern (SCAN)."""
    if not spec.is_pattern:
        return [spec.name]
    pattern = "".join(
        "*" if index % 2 else _glob_escape(part)
        for index, part in enumerate(spec.name.replace("}", "{").split("{"))
    )
    found = {as_str(key) async for key in client.scan_iter(match=pattern, _type="stream")}
    return sorted(stream for stream in found if spec.match(stream) is not None)


async def queue_stats(transport: Transport, stream: str) -> QueueStats:
    """The live figures of one concrete stream."""
    groups: list[GroupStats] = []
    now_s = time.time()
    for info in await transport.groups(stream):
        age_s: float | None = None
        if info.pending:
            oldest = (await transport.pending(stream, info.name)).oldest_id
            if oldest is not None:
                age_s = max(now_s - parse_id(oldest)[0] / 1000, 0.0)
        groups.append(GroupStats(info.name, info.consumers, info.pending, info.lag, age_s))
    return QueueStats(
        queue=registry.resolve(stream).name,
        stream=stream,
        length=await transport.length(stream),
        groups=tuple(groups),
        dead_letters=await transport.length(registry.dead_letter_stream(stream)),
    )
