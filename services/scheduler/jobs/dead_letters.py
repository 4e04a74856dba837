"""Job `report_dead_letters`: log and count every dead letter not reported before.

For each dead-letter stream the id of the last entry reported is kept in Redis
(`keys.DEAD_LETTER_CURSORS`), so each dead letter is reported once, by one replica, even
across restarts. The log line names the queue, reason, attempts, message type and the
runtime's error (truncated); the payload is never logged.
"""

from __future__ import annotations

import structlog

from services.scheduler import keys
from services.scheduler.deps import SchedulerDeps
from services.scheduler.jobs.streams import dead_letter_streams, source_queue, text
from services.scheduler.loop import Tick
from shared import registry

__all__ = ["report_dead_letters"]

log = structlog.get_logger("services.scheduler.jobs.dead_letters")

_ERROR_CHARS = 300


async def report_dead_letters(deps: SchedulerDeps, tick: Tick) -> None:
    """Report the dead letters added since the last report, stream by stream."""
    for dead_stream in await dead_letter_streams(deps.redis):
        reported = await _report_stream(deps, dead_stream)
        if reported:
            log.info("dead_letters_reported", dlq=dead_stream, count=reported, tick=tick.number)


async def _report_stream(deps: SchedulerDeps, dead_stream: str) -> int:
    stream = source_queue(dead_stream)
    if stream is None:
        return 0
    queue = registry.resolve(stream).name
    last = await deps.redis.hget(keys.DEAD_LETTER_CURSORS, dead_stream)
    start = "-" if last is None else f"({text(last)}"
    reported = 0
    while True:
        entries = await deps.redis.xrange(
            dead_stream, min=start, max="+", count=deps.settings.dead_letter_batch
        )
        entries = entries or []
        for raw_id, raw_fields in entries:
            fields = {text(k): text(v) for k, v in (raw_fields or {}).items()}
            reason = fields.get("dlq_reason", "unknown")
            deps.metrics.dead_letters.labels(queue, reason).inc()
            log.error(
                "dead_letter",
                queue=stream,
                dead_id=text(raw_id),
                reason=reason,
                attempts=fields.get("dlq_attempts", ""),
                message_type=fields.get("type", ""),
                correlation_id=fields.get("correlation_id", ""),
                source_entry_id=fields.get("dlq_entry_id", ""),
                error=fields.get("dlq_error", "")[:_ERROR_CHARS],
            )
        if not entries:
            return reported
        last_id = text(entries[-1][0])
        await deps.redis.hset(keys.DEAD_LETTER_CURSORS, dead_stream, last_id)
        reported += len(entries)
        if len(entries) < deps.settings.dead_letter_batch:
            return reported
        start = f"({last_id}"
