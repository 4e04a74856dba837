"""Traces exported from the standard `OTEL_*` environment variables; off when unset.

`configure_tracing()` sets the global tracer provider when the environment asks for traces:
`OTEL_TRACES_EXPORTER` (`otlp`, the default once an endpoint is set, or `console`; `none`
turns traces off), `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
(OTLP over HTTP/protobuf; headers, timeout and compression from their `OTEL_EXPORTER_OTLP_*`
variables), `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (read by the SDK),
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SDK_DISABLED`. With none of them set, nothing is
configured and the messaging runtime skips its spans altogether.

Each actor is a service of its own: spans started under an actor (see
`shared.observability.context.current_actor`) carry `service.name = <prefix>-<actor>`, the
prefix being `OTEL_SERVICE_NAME` or `orchestrator`. One process running every actor
(`orchestrator up`) keeps one SDK provider per actor, sharing one span processor.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Tracer, TracerProvider
from opentelemetry.util.types import Attributes

from shared.observability.context import current_actor

if TYPE_CHECKING:  # the SDK is imported once traces are asked for (a worker's start skips it)
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = [
    "ActorTracerProvider",
    "TracingConfigError",
    "configure_tracing",
    "current_traceparent",
    "shutdown_tracing",
    "span_attributes",
    "traceparent_context",
    "tracing_requested",
]

_EXPORTERS = ("otlp", "console", "none")


class TracingConfigError(ValueError):
    """An `OTEL_*` variable this system cannot honour (named in the message)."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def tracing_requested(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces."""
    env = os.environ if env is None else env
    if _truthy(env.get("OTEL_SDK_DISABLED")):
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def _exporter(env: Mapping[str, str]) -> SpanExporter:
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    name = names[0] if names and names[0] else "otlp"
    if name not in _EXPORTERS or len(names) > 1:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={env.get('OTEL_TRACES_EXPORTER')!r}: one of "
            f"{', '.join(_EXPORTERS)} is supported"
        )
    protocol = env.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if name == "otlp" and protocol and protocol != "http/protobuf":
        raise TracingConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: only http/protobuf is supported"
        )
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as error:  # e.g. a worker image built without it
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http: {error}"
        ) from None
    return OTLPSpanExporter()


class ActorTracerProvider(TracerProvider):
    """A tracer provider that hands each span to the SDK provider of the actor it starts
    under, so one process reports each of its actors as a service of its own."""

    def __init__(self, prefix: str, processor: SpanProcessor, default_actor: str) -> None:
        self.prefix = prefix
        self.processor = processor
        self.default_actor = default_actor
        self._providers: dict[str, SdkTracerProvider] = {}
        self._lock = threading.Lock()

    def provider_for(self, actor: str) -> SdkTracerProvider:
        """The SDK provider of `actor` (created on first use)."""
        actor = actor or self.default_actor
        with self._lock:
            provider = self._providers.get(actor)
            if provider is None:
                from opentelemetry.sdk.resources import Resource
                from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

                resource = Resource.create(
                    {"service.name": f"{self.prefix}-{actor}", "orchestrator.actor": actor}
                )
                provider = SdkTracerProvider(resource=resource)
                provider.add_span_processor(self.processor)
                self._providers[actor] = provider
            return provider

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes | None = None,
    ) -> Tracer:
        return _ActorTracer(self, instrumenting_module_name, instrumenting_library_version)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export what is buffered."""
        return bool(self.processor.force_flush(timeout_millis))

    def shutdown(self) -> None:
        """Flush and stop exporting."""
        self.processor.force_flush()
        self.processor.shutdown()


class _ActorTracer(Tracer):
    def __init__(self, owner: ActorTracerProvider, name: str, version: str | None) -> None:
        self._owner, self._name, self._version = owner, name, version

    def _tracer(self) -> Tracer:
        provider = self._owner.provider_for(current_actor.get())
        return provider.get_tracer(self._name, self._version)

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        return self._tracer().start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        with self._tracer().start_as_current_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
            end_on_exit,
        ) as span:
            yield span


_configured: ActorTracerProvider | None = None


def configure_tracing(
    default_actor: str,
    *,
    env: Mapping[str, str] | None = None,
    exporter: SpanExporter | None = None,
) -> ActorTracerProvider | None:
    """Set the global tracer provider from the `OTEL_*` variables (once per process); None
    when they ask for no traces. `exporter` replaces the one the variables name (tests)."""
    global _configured
    env = os.environ if env is None else env
    if _configured is not None:
        return _configured
    if exporter is None and not tracing_requested(env):
        return None
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    span_exporter = exporter if exporter is not None else _exporter(env)
    prefix = (env.get("OTEL_SERVICE_NAME") or "orchestrator").strip() or "orchestrator"
    provider = ActorTracerProvider(prefix, BatchSpanProcessor(span_exporter), default_actor)
    trace.set_tracer_provider(provider)
    _configured = provider
    return provider


def shutdown_tracing() -> None:
    """Export what is left (call before the process exits)."""
    if _configured is not None:
        _configured.shutdown()


def span_attributes(**values: Any) -> dict[str, str]:
    """Attributes of ours (`orchestrator.<name>`) with the empty values left out."""
    return {f"orchestrator.{key}": str(value) for key, value in values.items() if value}


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, or None when no span is recording."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent") or None


@contextmanager
def traceparent_context(traceparent: str | None) -> Iterator[None]:
    """Run the block in the trace a `traceparent` names (as is when it is empty)."""
    if not traceparent:
        yield
        return
    token = otel_context.attach(propagate.extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        otel_context.detach(token)
