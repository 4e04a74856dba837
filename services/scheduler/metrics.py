"""Prometheus metrics of the scheduler."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

__all__ = ["SchedulerMetrics"]

_PREFIX = "orchestrator_scheduler"
_default: SchedulerMetrics | None = None


@dataclass(frozen=True)
class SchedulerMetrics:
    """The scheduler's metric families, registered on one `CollectorRegistry`."""

    ticks: Counter
    """Ticks seen by this replica, by job and outcome (`ran`, `failed`, ...)."""
    run_seconds: Histogram
    dead_letters: Counter
    """New dead letters reported, by queue pattern and reason."""
    task_redrives: Counter
    """Queue messages of queued tasks published again, by task type."""
    tasks_failed: Counter
    """Tasks failed by the scheduler, by the status they were in and the cause (`deadline`,
    `redrives`)."""

    @classmethod
    def create(cls, registry: CollectorRegistry) -> SchedulerMetrics:
        """Register the families on `registry` (tests pass a fresh one)."""
        return cls(
            ticks=Counter(
                f"{_PREFIX}_ticks", "Job ticks by outcome", ("job", "outcome"), registry=registry
            ),
            run_seconds=Histogram(
                f"{_PREFIX}_run_seconds",
                "Duration of successful job runs",
                ("job",),
                registry=registry,
            ),
            dead_letters=Counter(
                f"{_PREFIX}_dead_letters",
                "New dead letters seen by the dead-letter report",
                ("queue", "reason"),
                registry=registry,
            ),
            task_redrives=Counter(
                f"{_PREFIX}_task_redrives",
                "Queue messages of queued tasks published again",
                ("type",),
                registry=registry,
            ),
            tasks_failed=Counter(
                f"{_PREFIX}_tasks_failed",
                "Tasks failed by the scheduler",
                ("status", "cause"),
                registry=registry,
            ),
        )

    @classmethod
    def default(cls) -> SchedulerMetrics:
        """The families on prometheus_client's default registry (created on first use)."""
        global _default
        if _default is None:
            _default = cls.create(REGISTRY)
        return _default
