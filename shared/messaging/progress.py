"""`ProgressEvent`s on `task_progress:{task_id}`: capped, expiring, followed to the end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from shared import registry
from shared.contracts import ProgressEvent
from shared.messaging.backoff import Backoff
from shared.messaging.cancel import raise_if_cancelling
from shared.messaging.envelope import Envelope, decode_message
from shared.messaging.errors import DecodeError
from shared.messaging.keys import progress_stream
from shared.messaging.publisher import Publisher
from shared.messaging.transport import Transport, TransportConnectionError

__all__ = ["follow_progress", "publish_progress"]

PROGRESS_MAXLEN = 1_000
PROGRESS_TTL_S = 7 * 86400


async def publish_progress(
    transport: Transport,
    publisher: Publisher,
    task_id: str,
    event: ProgressEvent,
    *,
    maxlen: int = PROGRESS_MAXLEN,
    ttl_s: int = PROGRESS_TTL_S,
) -> str:
    """Append an event to the task's progress stream (capped) and refresh its expiry."""
    stream = progress_stream(task_id)
    envelope = publisher.envelope(stream, event)
    return await transport.add_capped_expiring(
        stream, envelope.to_fields(), maxlen=maxlen, ttl_s=ttl_s
    )


async def follow_progress(
    transport: Transport, task_id: str, *, from_start: bool = True, block_ms: int = 1_000
) -> AsyncIterator[ProgressEvent]:
    """Yield the task's events, from its start or from now, until a terminal event."""
    stream = progress_stream(task_id)
    spec = registry.resolve(stream)
    position = "0-0"
    if not from_start:
        newest = await transport.revrange(stream, count=1)
        position = newest[0].entry_id if newest else "0-0"
    backoff = Backoff(base_s=0.1, max_s=5.0)
    while True:
        raise_if_cancelling()
        try:
            entries = await transport.read({stream: position}, count=100, block_ms=block_ms)
        except TransportConnectionError:
            await asyncio.sleep(backoff.next_delay_s())  # Redis away: keep following after it
            continue
        backoff.reset()
        for entry in entries:
            position = entry.entry_id
            if entry.fields is None:
                continue
            try:
                event = decode_message(spec, Envelope.from_fields(entry.fields))
            except DecodeError:
                continue  # a foreign entry cannot end or break a follower
            if isinstance(event, ProgressEvent):
                yield event
                if event.is_terminal:
                    return
