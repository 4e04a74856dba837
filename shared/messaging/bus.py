"""`Bus`: the one object an actor holds to publish, consume, request, report progress."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import redis.asyncio as aioredis
from opentelemetry.trace import TracerProvider
from pydantic import BaseModel

from shared import registry
from shared.contracts import ProgressEvent
from shared.messaging import dlq, idempotency, progress, request_reply
from shared.messaging.consumer import Consumer, ConsumerOptions, Handler
from shared.messaging.keys import default_consumer_name
from shared.messaging.metrics import Metrics, default_metrics
from shared.messaging.publisher import Publisher
from shared.messaging.redis_transport import RedisTransport
from shared.messaging.tracing import Tracing
from shared.messaging.transport import Transport

__all__ = ["Bus"]

T = TypeVar("T")


class Bus:
    """Typed Redis Streams for one actor: `Bus(redis, actor=Actor.LANGGRAPH)`."""

    def __init__(
        self,
        redis: aioredis.Redis | None = None,
        *,
        actor: registry.Actor | str,
        consumer_name: str | None = None,
        transport: Transport | None = None,
        metrics: Metrics | None = None,
        tracer_provider: TracerProvider | None = None,
        publish_attempts: int = 6,
    ) -> None:
        if transport is None:
            if redis is None:
                raise ValueError("Bus needs a redis client or a transport")
            transport = RedisTransport(redis)
        self.transport: Transport = transport
        self.actor = str(actor.value if isinstance(actor, registry.Actor) else actor)
        self.consumer_name = consumer_name or default_consumer_name(self.actor)
        self.metrics = metrics or default_metrics()
        self.tracing = Tracing(tracer_provider)
        self.publisher = Publisher(
            transport,
            producer=self.actor,
            metrics=self.metrics,
            tracing=self.tracing,
            attempts=publish_attempts,
        )

    # publishing ---------------------------------------------------------------------------

    async def publish(
        self,
        stream: str,
        message: BaseModel,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> str:
        """Write one message (checked against the registry); returns its entry id."""
        return await self.publisher.publish(
            stream, message, correlation_id=correlation_id, causation_id=causation_id
        )

    async def publish_many(
        self,
        items: Sequence[tuple[str, BaseModel]],
        *,
        correlation_id: str | None = None,
        correlation_ids: Sequence[str | None] | None = None,
        traceparents: Sequence[str | None] | None = None,
    ) -> list[str]:
        """Write several messages in one round trip; returns their entry ids
        (`Publisher.publish_many`: a correlation id and a trace per message, if given)."""
        return await self.publisher.publish_many(
            items,
            correlation_id=correlation_id,
            correlation_ids=correlation_ids,
            traceparents=traceparents,
        )

    # consuming ----------------------------------------------------------------------------

    def default_group(self, streams: Sequence[str]) -> str:
        """This actor's group when the registry names it a consumer/observer, else the
        registry's consumer group (the same for every stream, or an error)."""
        groups: set[str] = set()
        for stream in streams:
            spec = registry.resolve(stream)
            groups.add(self.actor if self.actor in spec.groups else spec.consumer_group)
        if len(groups) != 1:
            raise ValueError(f"streams {list(streams)} have different groups; pass group=")
        return groups.pop()

    def consumer(
        self,
        stream: str | Sequence[str],
        handler: Handler,
        *,
        group: str | None = None,
        concurrency: int = 8,
        max_attempts: int = 5,
        consumer_name: str | None = None,
        required_groups: Sequence[str] | None = None,
        **options: Any,
    ) -> Consumer:
        """A consumer of `stream` (or several) calling `handler`; `await consumer.run()`.

        `options` are the other `ConsumerOptions` fields (reclaim_idle_ms, block_ms, ...)."""
        streams = [stream] if isinstance(stream, str) else list(stream)
        return Consumer(
            self.transport,
            streams,
            handler,
            publisher=self.publisher,
            metrics=self.metrics,
            tracing=self.tracing,
            group=group or self.default_group(streams),
            consumer_name=consumer_name or self.consumer_name,
            options=ConsumerOptions(concurrency=concurrency, max_attempts=max_attempts, **options),
            required_groups=required_groups,
        )

    # request/reply, progress --------------------------------------------------------------

    async def request(
        self, stream: str, message: BaseModel, *, reply_stream: str, timeout_s: float
    ) -> BaseModel:
        """Publish a request and wait for the reply with the same `request_id`."""
        return await request_reply.request(
            self.transport,
            self.publisher,
            stream,
            message,
            reply_stream=reply_stream,
            timeout_s=timeout_s,
        )

    async def wait_reply(
        self,
        reply_stream: str,
        request_id: str,
        *,
        since_id: str = "0-0",
        timeout_s: float,
        consume: bool = True,
    ) -> BaseModel:
        """Wait for the reply to an earlier request (e.g. after a restart); `consume=False`
        leaves it in the stream (for another reader of the same request)."""
        return await request_reply.wait_reply(
            self.transport,
            reply_stream,
            request_id,
            since_id=since_id,
            timeout_s=timeout_s,
            consume=consume,
        )

    async def progress(self, task_id: str, event: ProgressEvent) -> str:
        """Append a progress event to `task_progress:{task_id}` (capped, expiring)."""
        return await progress.publish_progress(self.transport, self.publisher, task_id, event)

    def follow_progress(
        self, task_id: str, *, from_start: bool = True, block_ms: int = 1_000
    ) -> AsyncIterator[ProgressEvent]:
        """The task's events, from its start or from now, until a terminal event."""
        return progress.follow_progress(
            self.transport, task_id, from_start=from_start, block_ms=block_ms
        )

    # idempotency --------------------------------------------------------------------------

    def once(self, key: str, *, ttl_s: float = 7 * 86400) -> AbstractAsyncContextManager[bool]:
        """`async with bus.once(request_id) as first:` the effect happens once per key."""
        return idempotency.once(self.transport, key, ttl_s=ttl_s)

    async def run_once(self, key: str, effect: Callable[[], Awaitable[T]]) -> T | None:
        """Await `effect()` once per key across redeliveries; None when it already ran."""
        return await idempotency.run_once(self.transport, key, effect)

    # dead letters -------------------------------------------------------------------------

    async def dead_letters(self, stream: str, *, count: int = 100) -> list[dlq.DeadLetterEntry]:
        """The oldest dead letters of a stream."""
        return await dlq.list_dead_letters(self.transport, stream, count=count)

    async def replay_dead_letters(
        self, stream: str, *, ids: Sequence[str] | None = None
    ) -> list[str]:
        """Move dead letters back onto their stream; returns the new entry ids."""
        return await dlq.replay_dead_letters(self.transport, stream, ids=ids)

    async def purge_dead_letters(self, stream: str, *, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters; returns how many."""
        return await dlq.purge_dead_letters(self.transport, stream, ids=ids)
