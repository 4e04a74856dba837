"""Publishing: registry check, envelope, one entry per message, retried on connection loss."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate
from pydantic import BaseModel

from shared import registry
from shared.contracts import new_id
from shared.messaging.backoff import Backoff
from shared.messaging.context import current_correlation_id, current_envelope
from shared.messaging.envelope import Envelope, new_message_id, new_message_ids
from shared.messaging.errors import PublishError
from shared.messaging.metrics import Metrics
from shared.messaging.tracing import NO_TRACEPARENT, PublishSpan, Tracing
from shared.messaging.transport import Fields, Transport, TransportConnectionError
from shared.observability.context import task_of_request

__all__ = ["Publisher", "correlation_of"]

log = structlog.get_logger("shared.messaging.publisher")
T = TypeVar("T")


@functools.lru_cache(maxsize=4096)
def resolve(stream: str) -> registry.QueueSpec:
    """`registry.resolve`, remembered (patterns are matched by regular expressions)."""
    return registry.resolve(stream)


def correlation_of(message: BaseModel, explicit: str | None) -> str:
    """The correlation id a message travels with: explicit, else set on the message, else the
    handled message's, else the caller's context, else the message's own default."""
    if explicit:
        return explicit
    own = getattr(message, "correlation_id", None)
    if isinstance(own, str) and "correlation_id" in message.model_fields_set:
        return own
    ambient = current_envelope.get()
    if ambient is not None and ambient.correlation_id:
        return ambient.correlation_id
    from_context = current_correlation_id.get()
    if from_context:
        return from_context
    return own if isinstance(own, str) and own else new_id()


class Publisher:
    """Writes typed messages as enveloped stream entries."""

    def __init__(
        self,
        transport: Transport,
        *,
        producer: str,
        metrics: Metrics,
        tracing: Tracing,
        attempts: int = 6,
        backoff: Backoff | None = None,
    ) -> None:
        self.transport = transport
        self.producer = producer
        self.metrics = metrics
        self.tracing = tracing
        self.attempts = attempts
        template = backoff or Backoff(base_s=0.1, max_s=2.0)
        self.backoff_base_s = template.base_s
        self.backoff_max_s = template.max_s

    def envelope(
        self,
        stream: str,
        message: BaseModel,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        traceparent: str = "",
        message_id: str | None = None,
    ) -> Envelope:
        """Check the message against the registry and wrap it (refuses a wrong type);
        `message_id` is a fresh UUID unless given."""
        resolve(stream).check(message)
        cid = correlation_of(message, correlation_id)
        if getattr(message, "correlation_id", cid) != cid:
            message = message.model_copy(update={"correlation_id": cid})
        if not causation_id:
            ambient = current_envelope.get()
            causation_id = ambient.message_id if ambient else ""
        return Envelope(
            registry.message_type_name(type(message)),
            message.model_dump_json(),
            cid,
            message_id or new_message_id(),
            causation_id,
            traceparent,
            int(time.time() * 1000),
            self.producer,
            str(getattr(message, "version", "1")),
        )

    async def publish(
        self,
        stream: str,
        message: BaseModel,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        maxlen: int | None = None,
    ) -> str:
        """Write one message; returns its entry id. Raises `PublishError` when it could not."""
        message_type = registry.message_type_name(type(message))
        span = (
            PublishSpan(self.tracing, stream, message_type)
            if self.tracing.enabled
            else NO_TRACEPARENT
        )
        with span as traceparent:
            envelope = self.envelope(
                stream,
                message,
                correlation_id=correlation_id,
                causation_id=causation_id,
                traceparent=traceparent,
            )
            if isinstance(span, PublishSpan):
                span.annotate(envelope.correlation_id, task_of_request(message))
            fields = envelope.to_fields()
            entry_id = await self._retrying(
                stream, lambda: self.transport.add(stream, fields, maxlen=maxlen)
            )
        self.metrics.published.labels(resolve(stream).name, message_type).inc()
        log.debug(
            "published",
            queue=stream,
            type=message_type,
            entry_id=entry_id,
            correlation_id=envelope.correlation_id,
        )
        return entry_id

    async def publish_many(
        self,
        items: Sequence[tuple[str, BaseModel]],
        *,
        correlation_id: str | None = None,
        correlation_ids: Sequence[str | None] | None = None,
        traceparents: Sequence[str | None] | None = None,
    ) -> list[str]:
        """Write several messages in one round trip; returns their entry ids in order.
        `correlation_ids`: each message's own (else `correlation_id`, else the message's);
        `traceparents`: the trace each message's publish belongs to (the outbox relay's rows
        were written by requests of different traces)."""
        batch: list[tuple[str, Fields]] = []
        sent: list[tuple[str, str, str]] = []
        counts: dict[tuple[str, str], int] = {}
        traced = self.tracing.enabled
        message_ids = new_message_ids(len(items))
        for number, ((stream, message), message_id) in enumerate(
            zip(items, message_ids, strict=True)
        ):
            message_type = registry.message_type_name(type(message))
            own = correlation_ids[number] if correlation_ids is not None else None
            parent = traceparents[number] if traced and traceparents is not None else None
            token = None
            if parent:  # the span's parent: the trace of the request that wrote the row
                token = otel_context.attach(propagate.extract({"traceparent": parent}))
            try:
                span = PublishSpan(self.tracing, stream, message_type) if traced else NO_TRACEPARENT
                with span as traceparent:
                    envelope = self.envelope(
                        stream,
                        message,
                        correlation_id=own or correlation_id,
                        traceparent=traceparent,
                        message_id=message_id,
                    )
                    if isinstance(span, PublishSpan):
                        span.annotate(envelope.correlation_id, task_of_request(message))
            finally:
                if token is not None:
                    otel_context.detach(token)
            batch.append((stream, envelope.to_fields()))
            sent.append((stream, message_type, envelope.correlation_id))
            labels = (resolve(stream).name, message_type)
            counts[labels] = counts.get(labels, 0) + 1
        if not batch:
            return []
        ids = await self._retrying(batch[0][0], lambda: self.transport.add_many(batch))
        for labels, count in counts.items():
            self.metrics.published.labels(*labels).inc(count)
        for (stream, message_type, correlation), entry_id in zip(sent, ids, strict=True):
            log.debug(  # as `publish` logs each message
                "published",
                queue=stream,
                type=message_type,
                entry_id=entry_id,
                correlation_id=correlation,
            )
        return ids

    async def _retrying(self, stream: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Run a write, retrying connection losses with backoff, then raise `PublishError`."""
        backoff = Backoff(base_s=self.backoff_base_s, max_s=self.backoff_max_s)
        for attempt in range(1, self.attempts + 1):
            try:
                return await operation()
            except TransportConnectionError as exc:
                if attempt == self.attempts:
                    raise PublishError(
                        f"could not publish to {stream!r} after {attempt} attempts: {exc}"
                    ) from exc
                delay_s = backoff.next_delay_s()
                log.warning(
                    "publish_retry", queue=stream, attempt=attempt, delay_s=delay_s, error=str(exc)
                )
                await asyncio.sleep(delay_s)
        raise AssertionError("unreachable")  # pragma: no cover
