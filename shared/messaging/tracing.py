"""OpenTelemetry spans linked across hops through the envelope's `traceparent`.

When no tracer provider is configured (neither passed to the `Bus` nor set globally), spans
would be no-ops; they are then skipped altogether, which keeps the hot path cheap. Whether a
global provider has been set is looked up at most once a second (the lookup reads the
environment), and never again once it has.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from types import TracebackType
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Link, Span, SpanKind, Tracer, TracerProvider

__all__ = ["NO_SPAN", "NO_TRACEPARENT", "ConsumeSpan", "PublishSpan", "Tracing"]

_RECHECK_S = 1.0
NO_TRACEPARENT = nullcontext("")
"""Stands in for a `PublishSpan` when tracing is off: yields an empty traceparent."""
NO_SPAN = nullcontext(None)
"""Stands in for a `ConsumeSpan` when tracing is off: yields no span."""


class Tracing:
    """The runtime's tracer, and whether tracing is configured at all."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.explicit = provider is not None
        self.tracer: Tracer = trace.get_tracer("shared.messaging", tracer_provider=provider)
        self._enabled = self.explicit
        self._checked_at = float("-inf")

    @property
    def enabled(self) -> bool:
        """True with an explicit provider, or once a global provider has been set."""
        if self._enabled:
            return True
        now = time.monotonic()
        if now - self._checked_at >= _RECHECK_S:
            self._checked_at = now
            provider = trace.get_tracer_provider()
            self._enabled = not isinstance(provider, trace.ProxyTracerProvider)
        return self._enabled


class _SpanScope:
    """Base of the span context managers: a span made current, or nothing when disabled."""

    __slots__ = ("_scope", "span")

    def __init__(self) -> None:
        self._scope: Any = None
        self.span: Span | None = None

    def _start(self, tracing: Tracing, name: str, **kwargs: Any) -> None:
        self._scope = tracing.tracer.start_as_current_span(name, **kwargs)
        self.span = self._scope.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._scope is not None:
            self._scope.__exit__(exc_type, exc, tb)


class PublishSpan(_SpanScope):
    """`with PublishSpan(tracing, stream, type) as traceparent:` a PRODUCER span."""

    __slots__ = ("message_type", "stream", "tracing")

    def __init__(self, tracing: Tracing, stream: str, message_type: str) -> None:
        super().__init__()
        self.tracing, self.stream, self.message_type = tracing, stream, message_type

    def __enter__(self) -> str:
        if not self.tracing.enabled:
            return ""
        self._start(
            self.tracing,
            f"publish {self.stream}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "redis",
                "messaging.destination.name": self.stream,
                "messaging.message.type": self.message_type,
            },
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier.get("traceparent", "")

    def annotate(self, correlation_id: str, task_id: str | None) -> None:
        """Name the message's correlation id and task on the span."""
        if self.span is not None:
            self.span.set_attribute("orchestrator.correlation_id", correlation_id)
            if task_id:
                self.span.set_attribute("orchestrator.task_id", task_id)


class ConsumeSpan(_SpanScope):
    """`with ConsumeSpan(...) as span:` a CONSUMER span, child of and linked to the publisher's
    span (`span` is None when tracing is off)."""

    __slots__ = ("attempt", "entry_id", "message_type", "stream", "traceparent", "tracing")

    def __init__(
        self,
        tracing: Tracing,
        stream: str,
        message_type: str,
        entry_id: str,
        traceparent: str,
        attempt: int,
    ) -> None:
        super().__init__()
        self.tracing, self.stream, self.message_type = tracing, stream, message_type
        self.entry_id, self.traceparent, self.attempt = entry_id, traceparent, attempt

    def __enter__(self) -> Span | None:
        if not self.tracing.enabled:
            return None
        parent = propagate.extract({"traceparent": self.traceparent}) if self.traceparent else None
        links: list[Link] = []
        if parent is not None:
            remote = trace.get_current_span(parent).get_span_context()
            if remote.is_valid:
                links.append(Link(remote))
        self._start(
            self.tracing,
            f"process {self.stream}",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "redis",
                "messaging.destination.name": self.stream,
                "messaging.message.type": self.message_type,
                "messaging.message.id": self.entry_id,
                "messaging.delivery_attempt": self.attempt,
            },
        )
        return self.span
