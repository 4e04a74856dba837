"""One engineering task through a real `orchestrator up`, watched as an operator watches it.

The system runs with its metrics on a free port, its traces exported over OTLP/HTTP (the
`OTEL_*` variables) to a receiver in this process, and its logs on a non-terminal stderr
(JSON by default). A real Prometheus scrapes it every second with the checked-in alert rules
loaded. After the task: PromQL counts one completed engineering task and the step
histogram's samples, every dashboard query is accepted, one trace holds spans of every actor
the task went through, every log line of the task's run is JSON carrying its correlation id,
and `orchestrator status` shows the same figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.redis_server import free_port
from tests.observability.receivers import PROMETHEUS, OtlpReceiver, Prometheus, ReceivedSpan
from tests.support.system import ROOT, UpSystem, reap

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "orchestrator.json"

pytestmark = pytest.mark.skipif(
    not Path(PROMETHEUS).exists() and not os.environ.get("REQUIRE_PROMETHEUS"),
    reason="Debian's prometheus package is not installed (CI sets REQUIRE_PROMETHEUS)",
)


@dataclass
class Run:
    """The system, its receivers, and the task it ran."""

    system: UpSystem
    metrics_port: int
    prometheus: Prometheus
    receiver: OtlpReceiver
    task: dict[str, Any]
    run_log: list[str]
    """The system's log lines written while the task ran."""

    @property
    def env(self) -> dict[str, str]:
        return self.system.env

    @property
    def log_path(self) -> Path:
        return self.system.log_path

    def cli(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        return self.system.cli(*args, timeout_s=timeout_s)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("observed")
    metrics_port = free_port()
    receiver = OtlpReceiver().start()
    settings = {
        "ORCHESTRATOR_METRICS__PORT": str(metrics_port),
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    system = UpSystem(tmp, settings=settings, start_timeout_s=300)
    prometheus = Prometheus(tmp / "prometheus", [f"127.0.0.1:{metrics_port}"], [ALERTS])
    try:
        prometheus.start()
        system.start()
        assert system.process is not None
        _wait_for_actors(metrics_port, system.process, system.log_path)
        partial = Run(system, metrics_port, prometheus, receiver, {}, [])
        created = partial.cli("project", "create", "shop", "--json")
        assert created.returncode == 0, created.stderr
        project_id = json.loads(created.stdout)["id"]
        offset = system.log_path.stat().st_size
        made = partial.cli(
            "task", "create", project_id, "--spec", "add a /hello endpoint", "--json"
        )
        assert made.returncode == 0, made.stderr
        task_id = json.loads(made.stdout)["id"]
        watched = partial.cli("task", "watch", task_id, "--timeout-s", "480", timeout_s=520)
        assert watched.returncode == 0, (
            watched.stdout + watched.stderr + system.log_path.read_text()[-3000:]
        )
        partial.task = json.loads(partial.cli("task", "show", task_id, "--json").stdout)
        time.sleep(1.0)  # the flow's last lines after its terminal event
        with system.log_path.open("rb") as handle:
            handle.seek(offset)
            partial.run_log = handle.read().decode().splitlines()
        yield partial
    finally:
        system.stop()
        prometheus.stop()
        receiver.stop()
        reap(system.data_dir)


def _wait_for_actors(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Until every actor reports up on the metrics endpoint (a loaded machine starts them
    slowly, and the CLI gives the API 30 s)."""
    from shared.observability.metrics import iter_families

    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, log_path.read_text()[-3000:]
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        up = {
            labels["actor"]
            for name, labels, value in iter_families(text)
            if name == "orchestrator_actor_up" and value == 1
        }
        if len(up) == 7 and "scheduler_started" in log_path.read_text():
            return
        assert time.monotonic() < deadline, f"actors up after 120 s: {up}"
        time.sleep(1)


def _eventually(check: Any, timeout_s: float = 20) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_prometheus_counts_the_task_and_its_steps(run: Run) -> None:
    """PromQL, against the real Prometheus that scraped `up`: one completed engineering task,
    step durations with samples for the engineering flow's steps, the outbox drained."""
    assert run.task["status"] == "completed"
    completed = 'sum(orchestrator_tasks_finished_total{type="engineering",status="completed"})'
    assert _eventually(lambda: run.prometheus.value(completed) == 1.0), run.prometheus.query(
        completed
    )
    assert run.prometheus.value('sum(orchestrator_tasks_finished_total{status="failed"})') in (
        None,
        0.0,
    )
    steps = run.prometheus.query(
        'sum by (step) (orchestrator_flow_step_seconds_count{flow="engineering"})'
    )["data"]["result"]
    counted = {row["metric"]["step"]: float(row["value"][1]) for row in steps}
    for step in ("create_worker", "send_spec", "checks", "integrate"):
        assert counted.get(step, 0) >= 1, counted
    assert (
        run.prometheus.value(
            'sum(orchestrator_flows_finished_total{flow="engineering",outcome="completed"})'
        )
        == 1.0
    )
    agent_runs = run.prometheus.value('sum(orchestrator_agent_runs_total{status="success"})')
    assert agent_runs is not None
    assert agent_runs >= 1
    # each answered run carried its record: its tokens and cost were counted (zero or more)
    assert run.prometheus.value('sum(orchestrator_agent_tokens_total{kind="input"})') is not None
    assert run.prometheus.value("sum(orchestrator_agent_cost_usd_total)") is not None
    assert (
        run.prometheus.value(
            'sum(orchestrator_http_requests_total{route="/api/tasks",method="POST",status="201"})'
        )
        == 1.0
    )
    assert run.prometheus.value("max(orchestrator_outbox_pending)") == 0.0
    assert run.prometheus.value('orchestrator_actor_up{actor="langgraph"}') == 1.0
    rules = httpx.get(f"{run.prometheus.url}/api/v1/rules", timeout=10).json()
    loaded = [rule["name"] for group in rules["data"]["groups"] for rule in group["rules"]]
    assert "OrchestratorOutboxLagging" in loaded
    assert "DeployedAppDown" in loaded
    assert all(
        rule["health"] != "err" for group in rules["data"]["groups"] for rule in group["rules"]
    ), rules


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_dashboard_query_is_accepted_by_prometheus(run: Run) -> None:
    """Each panel's expression, sent to the running Prometheus's query API, parses and runs."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(queries) >= 10
    for query in queries:
        answer = run.prometheus.query(query)
        assert answer["status"] == "success", (query, answer)
    answer = run.prometheus.query("sum(orchestrator_tasks_finished_total{")
    assert answer["status"] == "error"
    assert answer["errorType"] == "bad_data"


def _trace_of_task(spans: list[ReceivedSpan], task_id: str) -> list[ReceivedSpan]:
    created = [
        s
        for s in spans
        if s.service == "orchestrator-api"
        and s.attributes.get("orchestrator.task_id") == task_id
        and s.attributes.get("http.request.method") == "POST"
        and s.attributes.get("orchestrator.correlation_id")
    ]
    assert len(created) == 1, [(s.service, s.name) for s in spans if s.service.endswith("api")]
    return [s for s in spans if s.trace_id == created[0].trace_id]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_one_trace_follows_the_task_through_every_actor(run: Run) -> None:
    """The spans exported through `OTEL_*`: the task's creation request starts one trace, and
    the outbox, langgraph, scaffolder, worker-manager and the worker's wrapper join it,
    with the task id and the correlation id on the messages' spans."""
    task_id = run.task["id"]
    wanted = {
        "orchestrator-api",
        "orchestrator-langgraph",
        "orchestrator-worker-manager",
        "orchestrator-worker",
        "orchestrator-scaffolder",
    }

    def services() -> set[str]:
        return {s.service for s in _trace_of_task(list(run.receiver.spans), task_id)}

    seen = _eventually(lambda: wanted <= services() and services(), timeout_s=30)
    assert wanted <= seen, seen
    trace = _trace_of_task(list(run.receiver.spans), task_id)
    ids = {s.span_id for s in trace}
    roots = [s for s in trace if not s.parent_span_id or s.parent_span_id not in ids]
    assert len(roots) == 1, [(s.service, s.name) for s in roots]
    assert roots[0].name.startswith("POST /api/tasks"), roots[0]
    assert roots[0].service == "orchestrator-api"
    consumed = [s for s in trace if s.name.startswith("process ")]
    assert consumed
    assert {s.attributes.get("orchestrator.task_id") for s in consumed} == {task_id}
    (created,) = [
        s
        for s in trace
        if s.attributes.get("orchestrator.correlation_id")
        and s.attributes.get("http.request.method") == "POST"
    ]
    correlation_id = created.attributes["orchestrator.correlation_id"]
    assert {s.attributes.get("orchestrator.correlation_id") for s in consumed} == {correlation_id}
    published = {s.attributes.get("messaging.destination.name") for s in trace}
    assert "engineering:queue" in published
    assert "worker:commands" in published


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_log_line_of_the_task_is_json_with_its_correlation_id(run: Run) -> None:
    """stderr is a file, so `up` logs JSON: every line written while the task ran parses, and
    every line about the task names its correlation id, its actor and, inside a span, the
    trace."""
    assert run.run_log
    lines = [json.loads(line) for line in run.run_log]  # every line parses
    task_id = run.task["id"]
    about = [line for line in lines if line.get("task_id") == task_id]
    assert len(about) >= 5, lines
    (correlation_id,) = {line.get("correlation_id") for line in about}  # one, on every line
    assert correlation_id
    assert all(line.get("actor") for line in about)
    assert {"langgraph", "worker-manager"} <= {line["actor"] for line in about}
    assert all(len(line.get("trace_id", "")) == 32 for line in about)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_status_shows_actors_queues_and_finished_tasks(run: Run) -> None:
    """`orchestrator status --json` reads the same endpoint: every actor up, the queues,
    the completed task, no failures."""
    # the queues' gauges are sampled by each consumer's upkeep (at its start, then every
    # trim interval): on a loaded machine the first sample may come after the task's end
    deadline = time.monotonic() + 45
    while True:
        shown = run.cli("status", "--json")
        assert shown.returncode == 0, shown.stderr
        data = json.loads(shown.stdout)
        queues = {row["queue"] for row in data["queues"]}
        if "engineering:queue" in queues or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert data["actors"], data
    assert all(data["actors"].values()), data["actors"]
    assert "langgraph" in data["actors"]
    assert "api" in data["actors"]
    assert {"type": "engineering", "status": "completed", "count": 1} in data["tasks_finished"]
    assert data["last_failures"] == []
    assert "engineering:queue" in queues, queues
    human = run.cli("status")
    assert human.returncode == 0, human.stderr
    assert "langgraph up" in human.stdout
    assert "engineering completed 1" in human.stdout
