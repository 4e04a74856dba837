"""The system's Prometheus metrics beyond the messaging runtime's, and their endpoint.

Like `shared.messaging.metrics`, the families live on one `CollectorRegistry` (the default
one unless a test passes its own), created on first use. Labels are bounded: task types,
flow steps, agents, routes (the route's template, never its path), worker states.

`serve_metrics(settings)` serves the process's registry over HTTP (`/metrics`): one endpoint
per process, so `orchestrator up` serves all of its actors from one, and each
`orchestrator run <actor>` its own.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import start_http_server as _start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field

from shared.contracts.queues.worker_io import AgentRunRecord

__all__ = [
    "InFlightSteps",
    "MetricsServer",
    "MetricsSettings",
    "SystemMetrics",
    "serve_metrics",
]

log = structlog.get_logger("shared.observability.metrics")

_PREFIX = "orchestrator"
_STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_HTTP_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class MetricsSettings(BaseModel):
    """Where a process serves its Prometheus metrics (`ORCHESTRATOR_METRICS__*`)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    """The address to listen on (`0.0.0.0` for a Prometheus on another host)."""
    port: int = Field(default=9464, ge=0, le=65_535)
    """The port; 0 picks a free one. A port already in use falls back to a free one, logged
    and printed (give each process of a multi-process deployment a port of its own)."""
    app_probe_s: float = Field(default=30.0, ge=0)
    """How often the api probes each deployed app's `/health`
    (`orchestrator_deployed_app_up`); 0 turns the probe off."""
    app_probe_timeout_s: float = Field(default=5.0, gt=0)


class InFlightSteps(Collector):
    """The step each running flow is at (`orchestrator_flow_steps_in_flight{flow,step}`),
    kept by the langgraph actor as its flows report progress."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at: dict[str, tuple[str, str]] = {}

    def enter(self, task_id: str, flow: str, step: str) -> None:
        """The flow of `task_id` is now at `step`."""
        with self._lock:
            self._at[task_id] = (flow, step)

    def leave(self, task_id: str) -> None:
        """The flow of `task_id` ended."""
        with self._lock:
            self._at.pop(task_id, None)

    def snapshot(self) -> dict[tuple[str, str], int]:
        """(flow, step) → how many flows are there."""
        counts: dict[tuple[str, str], int] = {}
        with self._lock:
            for key in self._at.values():
                counts[key] = counts.get(key, 0) + 1
        return counts

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            f"{_PREFIX}_flow_steps_in_flight",
            "Running flows by the step they are at",
            labels=("flow", "step"),
        )
        for (flow, step), count in sorted(self.snapshot().items()):
            family.add_metric((flow, step), count)
        yield family


@dataclass(frozen=True)
class SystemMetrics:
    """The families of the actors (tasks, flows, agents, workers, API, outbox)."""

    actor_up: Gauge
    """1 while an actor runs in this process, 0 once it stopped."""
    tasks_created: Counter
    tasks_finished: Counter
    """Tasks that reached a final status, by type and status (written by the API)."""
    flows_finished: Counter
    step_seconds: Histogram
    """How long each flow step took, from its start to its answer (or its failure)."""
    steps_in_flight: InFlightSteps
    agent_runs: Counter
    agent_run_seconds: Histogram
    agent_tokens: Counter
    """Tokens of agent runs by agent and kind (input, output, cache_read, cache_write)."""
    agent_cost_usd: Counter
    """Cost of agent runs in USD by agent (the worker's price table, as budget caps count)."""
    checks: Counter
    fix_rounds: Counter
    integrations: Counter
    conflicts: Counter
    deploys: Counter
    workers: Gauge
    worker_pool_size: Gauge
    http_requests: Counter
    http_request_seconds: Histogram
    outbox_pending: Gauge
    outbox_lag_seconds: Gauge
    deployed_app_up: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> SystemMetrics:
        """Register the families on `registry` (tests pass a fresh one)."""
        in_flight = InFlightSteps()
        registry.register(in_flight)
        return cls(
            actor_up=Gauge(
                f"{_PREFIX}_actor_up",
                "Actor running in this process",
                ("actor",),
                registry=registry,
            ),
            tasks_created=Counter(
                f"{_PREFIX}_tasks_created", "Tasks created", ("type",), registry=registry
            ),
            tasks_finished=Counter(
                f"{_PREFIX}_tasks_finished",
                "Tasks that reached a final status",
                ("type", "status"),
                registry=registry,
            ),
            flows_finished=Counter(
                f"{_PREFIX}_flows_finished",
                "Flows of the orchestrator that ended, by outcome",
                ("flow", "outcome"),
                registry=registry,
            ),
            step_seconds=Histogram(
                f"{_PREFIX}_flow_step_seconds",
                "Duration of a flow step, from its start to its answer",
                ("flow", "step", "outcome"),
                registry=registry,
                buckets=_STEP_BUCKETS,
            ),
            steps_in_flight=in_flight,
            agent_runs=Counter(
                f"{_PREFIX}_agent_runs",
                "Prompts run by coding agents, by agent and status",
                ("agent", "status"),
                registry=registry,
            ),
            agent_run_seconds=Histogram(
                f"{_PREFIX}_agent_run_seconds",
                "How long an agent took to answer a prompt",
                ("agent",),
                registry=registry,
                buckets=_STEP_BUCKETS,
            ),
            agent_tokens=Counter(
                f"{_PREFIX}_agent_tokens",
                "Tokens of agent runs, by agent and kind",
                ("agent", "kind"),
                registry=registry,
            ),
            agent_cost_usd=Counter(
                f"{_PREFIX}_agent_cost_usd",
                "Cost of agent runs in US dollars, by agent",
                ("agent",),
                registry=registry,
            ),
            checks=Counter(
                f"{_PREFIX}_checks_runs",
                "Runs of a task's checks, by result",
                ("result",),
                registry=registry,
            ),
            fix_rounds=Counter(
                f"{_PREFIX}_fix_rounds", "Fix prompts sent after failed checks", registry=registry
            ),
            integrations=Counter(
                f"{_PREFIX}_integrations",
                "Integrations of a task's work into its base branch, by mode and result",
                ("mode", "result"),
                registry=registry,
            ),
            conflicts=Counter(
                f"{_PREFIX}_merge_conflicts",
                "Merge conflicts handed to the agent",
                registry=registry,
            ),
            deploys=Counter(
                f"{_PREFIX}_deploys",
                "Deploys and rollbacks that ended, by kind and outcome",
                ("kind", "outcome"),
                registry=registry,
            ),
            workers=Gauge(f"{_PREFIX}_workers", "Workers by state", ("state",), registry=registry),
            worker_pool_size=Gauge(
                f"{_PREFIX}_worker_pool_size",
                "Live workers (starting, running or busy)",
                registry=registry,
            ),
            http_requests=Counter(
                f"{_PREFIX}_http_requests",
                "API requests by method, route template and status",
                ("method", "route", "status"),
                registry=registry,
            ),
            http_request_seconds=Histogram(
                f"{_PREFIX}_http_request_seconds",
                "API request latency",
                ("method", "route"),
                registry=registry,
                buckets=_HTTP_BUCKETS,
            ),
            outbox_pending=Gauge(
                f"{_PREFIX}_outbox_pending",
                "Outbox rows not yet published",
                registry=registry,
            ),
            outbox_lag_seconds=Gauge(
                f"{_PREFIX}_outbox_lag_seconds",
                "Age of the oldest outbox row not yet published (0 when none)",
                registry=registry,
            ),
            deployed_app_up=Gauge(
                f"{_PREFIX}_deployed_app_up",
                "1 when a deployed project's /health answered at the last probe, else 0",
                ("project",),
                registry=registry,
            ),
        )

    def observe_agent_run(
        self,
        adapter: str | None,
        status: str,
        duration_ms: int | None,
        run: AgentRunRecord | None,
    ) -> None:
        """One agent run: its count, its duration and (with its record) its tokens and cost,
        labelled with the worker's adapter (the same label with or without a record), else
        the record's agent, else `unknown`."""
        agent = adapter or (run.agent[:64] if run is not None and run.agent else "unknown")
        self.agent_runs.labels(agent, status).inc()
        if duration_ms is not None:
            self.agent_run_seconds.labels(agent).observe(max(duration_ms, 0) / 1000)
        if run is None:
            return
        for kind, count in (
            ("input", run.input_tokens),
            ("output", run.output_tokens),
            ("cache_read", run.cache_read_tokens),
            ("cache_write", run.cache_write_tokens),
        ):
            self.agent_tokens.labels(agent, kind).inc(max(count, 0))
        self.agent_cost_usd.labels(agent).inc(max(run.cost_usd, 0.0))

    @classmethod
    def default(cls) -> SystemMetrics:
        """The families on prometheus_client's default registry (created on first use)."""
        global _default
        with _default_lock:
            if _default is None:
                _default = cls.create(REGISTRY)
            return _default


_default: SystemMetrics | None = None
_default_lock = threading.Lock()


@dataclass
class MetricsServer:
    """A running `/metrics` endpoint."""

    url: str
    server: WSGIServer
    thread: threading.Thread

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(
    settings: MetricsSettings, registry: CollectorRegistry = REGISTRY
) -> MetricsServer | None:
    """Serve `registry` on `settings.host:port` (a free port when that one is taken); None
    when metrics are disabled."""
    if not settings.enabled:
        return None
    SystemMetrics.default()  # the families exist (at zero) from the first scrape
    try:
        server, thread = _start_http_server(settings.port, settings.host, registry)
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        server, thread = _start_http_server(0, settings.host, registry)
        log.warning(
            "metrics_port_in_use",
            wanted=settings.port,
            port=server.server_port,
            hint="set ORCHESTRATOR_METRICS__PORT to a free port per process",
        )
    wildcard = settings.host in ("0.0.0.0", "::", "")  # noqa: S104 - shown as loopback
    host = "127.0.0.1" if wildcard else settings.host
    if ":" in host:
        host = f"[{host}]"
    return MetricsServer(f"http://{host}:{server.server_port}/metrics", server, thread)


def iter_families(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """(sample name, labels, value) of every sample in a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            yield sample.name, dict(sample.labels), float(sample.value)
