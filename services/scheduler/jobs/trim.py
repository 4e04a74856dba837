"""Job `trim_streams`: keep streams from growing without bound.

- Queues (fixed names): entries every required consumer group has acknowledged are trimmed
  (XTRIM MINID below the lowest of each group's oldest pending entry and last delivered id).
  Each consumer's upkeep in `shared.messaging` trims its own stream while it runs; this is the
  backstop for streams whose consumer is down. A queue whose consumer group does not exist
  yet is left alone (its entries wait for the consumer); an observer that never started does
  not pin entries, as in the runtime.
- Dead-letter streams: entries older than `dead_letter_retention_s` are trimmed; the
  dead-letter report saw them long before.
"""

from __future__ import annotations

import structlog

from services.scheduler.deps import SchedulerDeps
from services.scheduler.jobs.streams import dead_letter_streams, text
from services.scheduler.loop import Tick
from shared import registry

__all__ = ["acknowledged_floor", "trim_streams"]

log = structlog.get_logger("services.scheduler.jobs.trim")


def _parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def acknowledged_floor(deps: SchedulerDeps, spec: registry.QueueSpec) -> str | None:
    """The id below which every required group acknowledged every entry of the queue, or
    None when nothing may be trimmed."""
    stream = spec.name
    if not await deps.redis.exists(stream):
        return None
    groups = {text(g["name"]): g for g in await deps.redis.xinfo_groups(stream)}
    floors: list[str] = []
    for name in spec.groups:
        info = groups.get(name)
        if info is None:
            if name == spec.consumer_group:
                return None
            continue
        ms, seq = _parse_id(text(info["last-delivered-id"]))
        floor = f"{ms}-{seq + 1}"
        if int(info["pending"]):
            summary = await deps.redis.xpending(stream, name)
            oldest = summary.get("min")
            if oldest is not None:
                floor = min(floor, text(oldest), key=_parse_id)
        floors.append(floor)
    return min(floors, key=_parse_id) if floors else None


async def trim_streams(deps: SchedulerDeps, tick: Tick) -> None:
    """Trim acknowledged queue entries and expired dead letters."""
    for spec in registry.iter_queues("queue"):
        if spec.is_pattern:
            continue
        floor = await acknowledged_floor(deps, spec)
        if floor is None:
            continue
        removed = int(await deps.redis.xtrim(spec.name, minid=floor, approximate=False))
        if removed:
            log.info("stream_trimmed", queue=spec.name, removed=removed, tick=tick.number)
    cutoff_ms = int((deps.clock() - deps.settings.dead_letter_retention_s) * 1000)
    for dead_stream in await dead_letter_streams(deps.redis):
        removed = int(
            await deps.redis.xtrim(dead_stream, minid=f"{cutoff_ms}-0", approximate=False)
        )
        if removed:
            log.info("dead_letters_expired", dlq=dead_stream, removed=removed, tick=tick.number)
