"""Prometheus metrics of the runtime. Labels use the registry's queue name (the pattern, e.g.
`worker:{id}:input`), so the number of series stays bounded however many workers exist."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics", "default_metrics"]

_PREFIX = "orchestrator_messaging"


@dataclass(frozen=True)
class Metrics:
    """The runtime's metric families, registered on one `CollectorRegistry`."""

    published: Counter
    processed: Counter
    failed: Counter
    retried: Counter
    dead_lettered: Counter
    handler_seconds: Histogram
    lag: Gauge
    pending: Gauge
    oldest_pending_age_s: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        """Register the families on `registry`."""
        qg = ("queue", "group")
        return cls(
            published=Counter(
                f"{_PREFIX}_published", "Messages published", ("queue", "type"), registry=registry
            ),
            processed=Counter(
                f"{_PREFIX}_processed",
                "Messages handled and acknowledged",
                (*qg, "type"),
                registry=registry,
            ),
            failed=Counter(
                f"{_PREFIX}_failed", "Handler failures", (*qg, "type"), registry=registry
            ),
            retried=Counter(
                f"{_PREFIX}_retried", "Deliveries scheduled again", (*qg, "type"), registry=registry
            ),
            dead_lettered=Counter(
                f"{_PREFIX}_dead_lettered",
                "Messages moved to the dead-letter stream",
                (*qg, "reason"),
                registry=registry,
            ),
            handler_seconds=Histogram(
                f"{_PREFIX}_handler_seconds",
                "Handler latency",
                (*qg, "type"),
                registry=registry,
                buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600),
            ),
            lag=Gauge(
                f"{_PREFIX}_lag", "Entries not yet delivered to the group", qg, registry=registry
            ),
            pending=Gauge(
                f"{_PREFIX}_pending", "Delivered, not yet acknowledged", qg, registry=registry
            ),
            oldest_pending_age_s=Gauge(
                f"{_PREFIX}_oldest_pending_age_seconds",
                "Age of the oldest pending entry",
                qg,
                registry=registry,
            ),
        )


_default: Metrics | None = None


def default_metrics() -> Metrics:
    """The families on prometheus_client's default registry (created on first use)."""
    global _default
    if _default is None:
        _default = Metrics.create(REGISTRY)
    return _default
