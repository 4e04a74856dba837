"""Request/reply over streams, matched by `request_id`.

The requester publishes the request, then reads the reply stream (XREAD, no group) from the
request's time on, until an entry with the same `request_id` arrives; it then deletes that
reply (and acknowledges it for the stream's group, should one have read it). A requester that
restarted calls `wait_reply` with the request's entry id: the reply is still in the stream.
"""

from __future__ import annotations

import asyncio
import json
import time

from pydantic import BaseModel

from shared import registry
from shared.messaging.cancel import raise_if_cancelling
from shared.messaging.envelope import Envelope, decode_message
from shared.messaging.errors import DecodeError, RequestTimeoutError
from shared.messaging.publisher import Publisher
from shared.messaging.transport import Entry, Transport, TransportConnectionError, parse_id

__all__ = ["request", "wait_reply"]

_CLOCK_MARGIN_MS = 1_000


def _request_id(entry: Entry) -> str | None:
    if entry.fields is None:
        return None
    try:
        payload = json.loads(entry.fields.get("payload", ""))
    except ValueError:
        return None
    found = payload.get("request_id") if isinstance(payload, dict) else None
    return found if isinstance(found, str) else None


async def wait_reply(
    transport: Transport,
    reply_stream: str,
    request_id: str,
    *,
    since_id: str = "0-0",
    timeout_s: float,
    consume: bool = True,
) -> BaseModel:
    """The reply to `request_id` on `reply_stream` after `since_id`; `RequestTimeoutError`."""
    spec = registry.resolve(reply_stream)
    ms, _ = parse_id(since_id)
    position = f"{max(ms - _CLOCK_MARGIN_MS, 0)}-0" if ms else "0-0"
    deadline = time.monotonic() + timeout_s
    while (left_s := deadline - time.monotonic()) > 0:
        raise_if_cancelling()
        try:
            entries = await transport.read(
                {reply_stream: position}, count=100, block_ms=max(int(left_s * 1000), 1)
            )
        except TransportConnectionError:
            await asyncio.sleep(min(0.2, max(left_s, 0)))
            continue
        for entry in entries:
            position = entry.entry_id
            if _request_id(entry) != request_id or entry.fields is None:
                continue
            try:
                reply = decode_message(spec, Envelope.from_fields(entry.fields))
            except DecodeError:
                continue
            if consume:  # acknowledge for the stream's group and delete, in one step
                await transport.ack(reply_stream, spec.consumer_group, entry.entry_id)
            return reply
    raise RequestTimeoutError(
        f"no reply to request {request_id!r} on {reply_stream!r} within {timeout_s}s"
    )


async def request(
    transport: Transport,
    publisher: Publisher,
    stream: str,
    message: BaseModel,
    *,
    reply_stream: str,
    timeout_s: float,
) -> BaseModel:
    """Publish `message` (it must carry a `request_id`) and wait for its reply."""
    request_id = getattr(message, "request_id", None)
    if not isinstance(request_id, str):
        raise TypeError(f"{type(message).__name__} has no request_id to match a reply by")
    entry_id = await publisher.publish(stream, message)
    return await wait_reply(
        transport, reply_stream, request_id, since_id=entry_id, timeout_s=timeout_s
    )
