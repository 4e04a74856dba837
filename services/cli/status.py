"""`orchestrator status`: one screen for a human, from the data Prometheus scrapes.

It reads the system's metrics endpoint(s) (the one `orchestrator up` recorded, or each
`--metrics-url`), and the API for the last failed tasks: actors up, queues (lag, pending, dead
letters), flows in flight by step, tasks finished, last failures. `--json` prints the same
as one JSON document.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from services.cli.projects import call_api
from shared.api_client import ApiClient
from shared.contracts import TaskDTO, TaskStatus
from shared.embedded import read_runtime
from shared.observability.metrics import iter_families
from shared.settings import Settings

err = Console(stderr=True)

Samples = list[tuple[str, dict[str, str], float]]


def _scrape(urls: list[str]) -> Samples:
    samples: Samples = []
    for url in urls:
        try:
            response = httpx.get(url, timeout=10)
            response.raise_for_status()
        except httpx.HTTPError as error:
            err.print(f"[red]error[/] metrics endpoint {url}: {error}")
            raise typer.Exit(1) from None
        samples.extend(iter_families(response.text))
    return samples


def summarize(samples: Samples) -> dict[str, Any]:
    """The status as data: actors, queues, steps, tasks."""
    actors: dict[str, bool] = {}
    queues: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    dead: dict[str, float] = defaultdict(float)
    steps: dict[tuple[str, str], float] = {}
    finished: dict[tuple[str, str], float] = defaultdict(float)
    workers: dict[str, float] = defaultdict(float)
    for name, labels, value in samples:
        if name == "orchestrator_actor_up":
            actors[labels["actor"]] = actors.get(labels["actor"], False) or value >= 1
        elif name in ("orchestrator_messaging_lag", "orchestrator_messaging_pending"):
            key = (labels.get("queue", ""), labels.get("group", ""))
            queues[key][name.rsplit("_", 1)[1]] = value
        elif name == "orchestrator_messaging_dead_lettered_total":
            dead[labels.get("queue", "")] += value
        elif name == "orchestrator_flow_steps_in_flight" and value:
            steps[(labels["flow"], labels["step"])] = value
        elif name == "orchestrator_tasks_finished_total":
            finished[(labels["type"], labels["status"])] += value
        elif name == "orchestrator_workers":
            workers[labels["state"]] += value
    return {
        "actors": dict(sorted(actors.items())),
        "queues": [
            {
                "queue": queue,
                "group": group,
                "lag": figures.get("lag"),
                "pending": figures.get("pending"),
                "dead_letters": dead.get(queue, 0.0),
            }
            for (queue, group), figures in sorted(queues.items())
        ],
        "steps_in_flight": [
            {"flow": flow, "step": step, "tasks": int(count)}
            for (flow, step), count in sorted(steps.items())
        ],
        "tasks_finished": [
            {"type": task_type, "status": status, "count": int(count)}
            for (task_type, status), count in sorted(finished.items())
        ],
        "workers": {state: int(count) for state, count in sorted(workers.items()) if count},
    }


def _failures(limit: int) -> list[TaskDTO]:
    async def work(client: ApiClient) -> list[TaskDTO]:
        page = await client.list_tasks(status=TaskStatus.FAILED, limit=limit)
        return list(page.items)

    return call_api(work)


def status(
    metrics_url: Annotated[
        list[str] | None,
        typer.Option(help="A metrics endpoint to read (repeat for one process per actor)."),
    ] = None,
    failures: Annotated[int, typer.Option(help="How many of the last failed tasks to show.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Actors up, queues, flows in flight by step, tasks finished and the last failures."""
    urls = list(metrics_url or [])
    if not urls:
        info = read_runtime(Settings())
        if info is None or not info.metrics_url:
            err.print(
                "[red]error[/] no running `orchestrator up` with metrics found in the data "
                "directory; pass --metrics-url"
            )
            raise typer.Exit(1)
        urls = [info.metrics_url]
    data = summarize(_scrape(urls))
    failed = _failures(failures) if failures > 0 else []
    data["last_failures"] = [
        {
            "task_id": task.id,
            "type": str(task.type.value),
            "error": str((task.result or {}).get("error") or ""),
            "updated_at": task.updated_at.isoformat() if task.updated_at else None,
        }
        for task in failed
    ]
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    _print(data)


def _print(data: dict[str, Any]) -> None:
    out = Console(width=160)
    actors = data["actors"]
    line = "  ".join(
        f"{name} [{'green' if up else 'red'}]{'up' if up else 'down'}[/]"
        for name, up in actors.items()
    )
    out.print(f"[bold]Actors[/]  {line or 'none reported'}")
    if data["workers"]:
        out.print("[bold]Workers[/] " + "  ".join(f"{k} {v}" for k, v in data["workers"].items()))
    queues = Table(title="Queues", title_justify="left")
    for column in ("queue", "group", "lag", "pending", "dead letters"):
        queues.add_column(column)
    for row in data["queues"]:
        lag = "?" if row["lag"] is None else f"{row['lag']:.0f}"
        pending = "?" if row["pending"] is None else f"{row['pending']:.0f}"
        queues.add_row(row["queue"], row["group"], lag, pending, f"{row['dead_letters']:.0f}")
    out.print(queues)
    steps = Table(title="In flight by step", title_justify="left")
    for column in ("flow", "step", "tasks"):
        steps.add_column(column)
    for row in data["steps_in_flight"]:
        steps.add_row(row["flow"], row["step"], str(row["tasks"]))
    out.print(steps if data["steps_in_flight"] else "[bold]In flight[/] no task is running")
    done = "  ".join(f"{r['type']} {r['status']} {r['count']}" for r in data["tasks_finished"])
    out.print(f"[bold]Finished since start[/]  {done or 'none'}")
    failures = Table(title="Last failures", title_justify="left")
    for column in ("task", "type", "when", "error"):
        failures.add_column(column)
    for row in data["last_failures"]:
        failures.add_row(row["task_id"], row["type"], row["updated_at"] or "", row["error"][:90])
    out.print(failures if data["last_failures"] else "[bold]Last failures[/] none")
