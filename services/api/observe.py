"""Metrics and traces of API requests.

Every request counts in `orchestrator_http_requests_total{method,route,status}` and
`orchestrator_http_request_seconds{method,route}`; the route is the matched route's template
(`/api/tasks/{task_id}`), `unmatched` otherwise, so the series stay bounded. When tracing is
configured, each request is a SERVER span, child of the caller's `traceparent` header (the
CLI, the chat, a PO worker), carrying the task id of task routes.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.messaging.tracing import Tracing
from shared.observability.metrics import SystemMetrics

__all__ = ["Observe", "annotate_current_span"]

_request_span: ContextVar[Span | None] = ContextVar("request_span", default=None)
"""The SERVER span of the request being served."""


class Observe:
    """ASGI middleware: request metrics, and a span per request when tracing is on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.metrics = SystemMetrics.default()
        self.tracing = Tracing()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "GET"))
        status = 500
        started = time.perf_counter()

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        span_scope: Any = None
        if self.tracing.enabled:
            headers = {
                key.decode("latin-1"): value.decode("latin-1")
                for key, value in scope.get("headers", [])
                if key in (b"traceparent", b"tracestate")
            }
            span_scope = self.tracing.tracer.start_as_current_span(
                f"{method} {scope.get('path', '')}",
                context=propagate.extract(headers) if headers else None,
                kind=SpanKind.SERVER,
                attributes={"http.request.method": method},
            )
        span = span_scope.__enter__() if span_scope is not None else None
        token = _request_span.set(span)
        try:
            await self.app(scope, receive, send_observed)
        finally:
            _request_span.reset(token)
            route = _route_of(scope)
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            self.metrics.http_request_seconds.labels(method, route).observe(
                time.perf_counter() - started
            )
            if span is not None and span_scope is not None:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                task_id = scope.get("path_params", {}).get("task_id")
                if task_id:
                    span.set_attribute("orchestrator.task_id", str(task_id))
                if status >= 500:
                    span.set_status(StatusCode.ERROR)
                span_scope.__exit__(None, None, None)


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


def annotate_current_span(**values: str) -> None:
    """Add `orchestrator.<name>` attributes to the request's span (and the current one)."""
    for span in {trace.get_current_span(), _request_span.get() or trace.INVALID_SPAN}:
        if span.is_recording():
            for key, value in values.items():
                if value:
                    span.set_attribute(f"orchestrator.{key}", value)
