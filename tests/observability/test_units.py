"""The observability pieces on their own: alert rules through promtool, the metrics endpoint
and its port fallback, the OTEL_* configuration and its refusals, JSON logs with the ambient
facts."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from shared.logs import configure_logging
from shared.observability.context import current_actor, current_task_id, task_of_request
from shared.observability.metrics import MetricsSettings, SystemMetrics, serve_metrics
from shared.observability.tracing import (
    ActorTracerProvider,
    TracingConfigError,
    _exporter,
    tracing_requested,
)
from tests.observability.receivers import PROMTOOL

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    not Path(PROMTOOL).exists() and not os.environ.get("REQUIRE_PROMETHEUS"),
    reason="promtool (Debian's prometheus package) is not installed",
)
def test_promtool_accepts_the_alert_rules_and_the_example_config(tmp_path: Path) -> None:
    """`promtool check rules` passes on the checked-in rules; a broken copy fails."""
    rules = ROOT / "deploy" / "prometheus" / "alerts.yml"
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout
    config = subprocess.run(
        [PROMTOOL, "check", "config", str(ROOT / "deploy" / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert config.returncode == 0, config.stdout + config.stderr
    broken = tmp_path / "alerts.yml"
    broken.write_text(rules.read_text().replace("> 60", "> > 60", 1))
    failed = subprocess.run(
        [PROMTOOL, "check", "rules", str(broken)], capture_output=True, text=True, check=False
    )
    assert failed.returncode != 0


def test_metrics_endpoint_serves_the_families_and_falls_back_when_the_port_is_taken() -> None:
    """Two endpoints asking for the same port: the second gets a free one and says which."""
    registry = CollectorRegistry()
    metrics = SystemMetrics.create(registry)
    metrics.tasks_finished.labels("engineering", "completed").inc()
    metrics.steps_in_flight.enter("t1", "engineering", "checks")
    first = serve_metrics(MetricsSettings(port=0), registry)
    assert first is not None
    port = int(first.url.rsplit(":", 1)[1].split("/")[0])
    second = serve_metrics(MetricsSettings(port=port), registry)
    assert second is not None
    try:
        assert second.url != first.url
        for server in (first, second):
            text = httpx.get(server.url, timeout=5).text
            assert (
                'orchestrator_tasks_finished_total{status="completed",type="engineering"} 1.0'
                in text
            )
            assert 'orchestrator_flow_steps_in_flight{flow="engineering",step="checks"} 1.0' in text
        metrics.steps_in_flight.leave("t1")
        assert "step=" not in httpx.get(first.url, timeout=5).text.split("in_flight")[-1]
    finally:
        first.close()
        second.close()
    assert serve_metrics(MetricsSettings(enabled=False), registry) is None


def test_bad_metrics_settings_are_refused() -> None:
    """A port out of range names the field."""
    from pydantic import ValidationError

    from shared.settings import Settings

    with pytest.raises(ValidationError, match=r"metrics\.port"):
        Settings(metrics={"port": 70000})  # type: ignore[arg-type]


def test_otel_variables_decide_whether_traces_are_exported() -> None:
    """Off when unset, when disabled or `none`; on with an endpoint or an exporter named."""
    assert not tracing_requested({})
    assert tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing_requested({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing_requested({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing_requested(
        {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    )
    with pytest.raises(TracingConfigError, match="OTEL_TRACES_EXPORTER='zipkin'"):
        _exporter({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(TracingConfigError, match="only http/protobuf"):
        _exporter({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


def test_each_actor_is_a_service_of_its_own() -> None:
    """One provider for a process of many actors: spans carry their actor's service name,
    and a child started under another actor stays in the parent's trace."""
    exporter = InMemorySpanExporter()
    provider = ActorTracerProvider("factory", SimpleSpanProcessor(exporter), "orchestrator")
    tracer = provider.get_tracer("tests")
    token = current_actor.set("api")
    try:
        with tracer.start_as_current_span("request"):
            current_actor.set("langgraph")
            with tracer.start_as_current_span("flow"):
                pass
    finally:
        current_actor.reset(token)
    with tracer.start_as_current_span("outside"):
        pass
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["request"].resource.attributes["service.name"] == "factory-api"
    assert spans["flow"].resource.attributes["service.name"] == "factory-langgraph"
    assert spans["outside"].resource.attributes["service.name"] == "factory-orchestrator"
    assert spans["flow"].context.trace_id == spans["request"].context.trace_id
    assert spans["flow"].parent is not None
    assert spans["flow"].parent.span_id == spans["request"].context.span_id


@pytest.fixture
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("_restore_logging")
def test_auto_logs_json_off_a_terminal_with_actor_task_and_trace() -> None:
    """`auto` on a non-terminal stream writes JSON lines that name the actor, the task being
    handled and the current span's trace."""
    out = io.StringIO()
    configure_logging("INFO", "auto", stream=out)
    exporter = InMemorySpanExporter()
    provider = ActorTracerProvider("o", SimpleSpanProcessor(exporter), "x")
    actor, task = current_actor.set("langgraph"), current_task_id.set("task-1")
    try:
        with provider.get_tracer("tests").start_as_current_span("step") as span:
            structlog.get_logger("tests").info("step_done", step="checks")
            trace_id = format(span.get_span_context().trace_id, "032x")
        logging.getLogger("tests.stdlib").warning("plain")
    finally:
        current_actor.reset(actor)
        current_task_id.reset(task)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["actor"] == "langgraph"
    assert first["task_id"] == "task-1"
    assert first["trace_id"] == trace_id
    assert second["event"] == "plain"
    assert second["actor"] == "langgraph"
    assert "trace_id" not in second
    assert trace.get_current_span().get_span_context().is_valid is False


def test_a_message_names_its_task() -> None:
    """`task_id`, else the task part of a step's request id, else nothing."""

    class Message:
        def __init__(self, **fields: str) -> None:
            self.__dict__.update(fields)

    assert task_of_request(Message(task_id="t1", request_id="x~y")) == "t1"
    assert task_of_request(Message(request_id="t2~checks#1")) == "t2"
    assert task_of_request(Message(request_id="plain")) is None
    assert task_of_request(object()) is None


def test_status_reads_an_endpoint_and_refuses_without_one(tmp_path: Path) -> None:
    """`orchestrator status --metrics-url` summarizes a real endpoint; with no running system
    and no URL it says what is missing; an endpoint that does not answer is named."""
    from typer.testing import CliRunner

    from services.cli.main import app
    from shared.redis_server import free_port

    registry = CollectorRegistry()
    metrics = SystemMetrics.create(registry)
    metrics.actor_up.labels("api").set(1)
    metrics.actor_up.labels("langgraph").set(0)
    metrics.tasks_finished.labels("deploy", "failed").inc(2)
    metrics.steps_in_flight.enter("t9", "deploy", "deploy")
    server = serve_metrics(MetricsSettings(port=0), registry)
    assert server is not None
    runner = CliRunner()
    try:
        shown = runner.invoke(
            app, ["status", "--metrics-url", server.url, "--failures", "0", "--json"]
        )
        assert shown.exit_code == 0, shown.output
        data = json.loads(shown.stdout)
        assert data["actors"] == {"api": True, "langgraph": False}
        assert data["tasks_finished"] == [{"type": "deploy", "status": "failed", "count": 2}]
        assert data["steps_in_flight"] == [{"flow": "deploy", "step": "deploy", "tasks": 1}]
        human = runner.invoke(app, ["status", "--metrics-url", server.url, "--failures", "0"])
        assert human.exit_code == 0, human.output
        assert "langgraph down" in human.stdout
    finally:
        server.close()
    env = {"ORCHESTRATOR_DATA_DIR": str(tmp_path)}
    missing = runner.invoke(app, ["status"], env=env)
    assert missing.exit_code == 1
    assert "--metrics-url" in missing.output
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    refused = runner.invoke(app, ["status", "--metrics-url", dead, "--failures", "0"])
    assert refused.exit_code == 1
    assert dead in refused.output


def test_an_agent_run_record_counts_its_tokens_and_cost_by_agent() -> None:
    """A run with its record adds its tokens by kind and its cost under the worker's
    adapter; a run without one (an older wrapper) is counted, with no tokens or cost; with
    the adapter unknown (the registry unreachable) the record names the agent."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from shared.contracts.queues.worker_io import AgentRunRecord

    registry = CollectorRegistry()
    metrics = SystemMetrics.create(registry)
    record = AgentRunRecord(
        agent="claude-code",
        status="success",
        prompt_chars=120,
        input_tokens=1500,
        output_tokens=320,
        cache_read_tokens=40,
        cost_usd=0.0125,
        duration_ms=2500,
    )
    failed = record.model_copy(
        update={"status": "error", "input_tokens": 10, "output_tokens": 0, "cost_usd": 0.001}
    )
    metrics.observe_agent_run("claude-code", "success", 2500, record)
    metrics.observe_agent_run("claude-code", "error", 800, failed)
    metrics.observe_agent_run("codex", "timeout", None, None)
    other = record.model_copy(update={"agent": "factory-droid", "cost_usd": 0.5})
    metrics.observe_agent_run(None, "success", 100, other)
    metrics.observe_agent_run(None, "timeout", 100, None)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    tokens = "orchestrator_agent_tokens_total"
    assert value(tokens, agent="claude-code", kind="input") == 1510
    assert value(tokens, agent="claude-code", kind="output") == 320
    assert value(tokens, agent="claude-code", kind="cache_read") == 80
    assert value(tokens, agent="claude-code", kind="cache_write") == 0
    cost = "orchestrator_agent_cost_usd_total"
    assert value(cost, agent="claude-code") == pytest.approx(0.0135)
    runs = "orchestrator_agent_runs_total"
    assert value(runs, agent="claude-code", status="success") == 1
    assert value(runs, agent="claude-code", status="error") == 1
    assert value("orchestrator_agent_run_seconds_count", agent="claude-code") == 2
    assert value("orchestrator_agent_run_seconds_sum", agent="claude-code") == pytest.approx(3.3)
    # without a record: counted under the worker's adapter, no usage, no duration
    assert value(runs, agent="codex", status="timeout") == 1
    assert value(tokens, agent="codex", kind="input") is None
    assert value(cost, agent="codex") is None
    assert value("orchestrator_agent_run_seconds_count", agent="codex") is None
    # the adapter unknown: the record's agent, else `unknown`
    assert value(cost, agent="factory-droid") == pytest.approx(0.5)
    assert value(tokens, agent="factory-droid", kind="input") == 1500
    assert value(runs, agent="unknown", status="timeout") == 1
    # and the exposition a Prometheus scrapes carries them
    names = {
        sample.name
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }
    assert {tokens, cost} <= names


def test_the_worker_image_carries_the_otlp_exporter_and_what_it_requires() -> None:
    """A worker asked to trace (OTEL_EXPORTER_OTLP_ENDPOINT) builds the OTLP exporter, so
    the worker image pins it and every distribution it requires (walked here from the
    installed metadata, independently of the uv.lock walk that wrote the file); the
    orchestrator image's requirements carry it too."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from services.worker_manager import images

    worker = images._pins(images.WORKER_REQUIREMENTS)
    orchestrator = images._pins(images.ORCHESTRATOR_REQUIREMENTS)
    environment = {"python_version": "3.11", "python_full_version": images.BASE_PYTHON}
    needed: set[str] = set()
    pending = ["opentelemetry-exporter-otlp-proto-http"]
    while pending:
        name = canonicalize_name(pending.pop())
        if name in needed:
            continue
        needed.add(name)
        for line in requires(name) or []:
            wanted = Requirement(line)
            if wanted.marker is None or wanted.marker.evaluate({**environment, "extra": ""}):
                pending.append(wanted.name)
    assert len(needed) > 3
    assert needed - set(worker) == set(), "missing from the worker image's requirements"
    assert needed - set(orchestrator) == set(), "missing from the orchestrator image's"
    exporter = _exporter({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert type(exporter).__name__ == "OTLPSpanExporter"
