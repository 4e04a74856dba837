"""`orchestrator task create|list|show|cancel|schedule|redrive`: tasks through the REST API
(see `projects`); `schedule` and `redrive` need an admin (or service) credential."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from services.cli.projects import JsonFlag, call_api, emit
from shared.api_client.schemas import TaskSchedule
from shared.chat.po_profile import CORRELATION_ID_ENV
from shared.contracts import TaskCreate, TaskDTO, TaskStatus, TaskType

app = typer.Typer(
    help="Tasks: create, list, show, cancel; deadlines and re-drives.", no_args_is_help=True
)


def task_table(tasks: Sequence[TaskDTO], *, title: str = "Tasks") -> Table:
    """Tasks as a table."""
    table = Table(title=title)
    for column in ("id", "project", "type", "status", "created", "spec / result"):
        table.add_column(column)
    for task in tasks:
        detail = str(task.result) if task.result else (task.spec or "")
        table.add_row(
            task.id,
            task.project_id,
            task.type.value,
            task.status.value,
            task.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            detail[:60],
        )
    return table


def _short(sha: object) -> str:
    return str(sha)[:12] if sha else "-"


def engineering_table(result: dict[str, Any], *, title: str = "Result") -> Table | None:
    """An engineering task's result in a readable form: where the work landed, the pull
    request, each run of the checks with each check's outcome, the agent's last answer;
    None for a result that is not an engineering task's."""
    if "checks" not in result or "task_branch" not in result:
        return None
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    landed = result.get("commit_sha")
    table.add_row("status", str(result.get("status") or "-"))
    if result.get("error"):
        table.add_row("error", str(result["error"])[:2000])
    table.add_row("commit", f"{_short(landed)} on {result.get('branch') or '-'}")
    table.add_row("task branch", str(result.get("task_branch") or "-"))
    table.add_row("merged", _short(result.get("merged_sha")))
    if result.get("pull_request_url"):
        table.add_row("pull request", str(result["pull_request_url"]))
    files = result.get("files_changed") or []
    table.add_row("files", ", ".join(str(f) for f in files) or "-")
    checks = result.get("checks") or {}
    for run in checks.get("runs", []):
        verdict = "passed" if run.get("passed") else "FAILED"
        lines = [f"{verdict} after {run.get('after', '?')}: {run.get('note') or ''}".strip()]
        for check in run.get("checks", []):
            where = f" (in {check.get('cwd')})" if check.get("cwd") not in (None, ".") else ""
            lines.append(
                f"  {'ok  ' if check.get('passed') else 'FAIL'} $ {check.get('command')}{where}"
                f" → exit {check.get('exit_code')} in {check.get('duration_s')} s"
            )
        lines.extend(f"  - {problem}" for problem in run.get("problems", []))
        table.add_row(f"checks #{run.get('round')}", "\n".join(lines))
    if result.get("conflict_files"):
        table.add_row("conflicts", ", ".join(result["conflict_files"]))
    if result.get("agent_answer"):
        table.add_row("agent", str(result["agent_answer"])[:1000])
    cost = result.get("agent_cost_usd")
    if isinstance(cost, int | float) and result.get("agent_runs"):
        runs = int(result["agent_runs"])
        table.add_row(
            "agent cost",
            f"${cost:.4f} in {runs} run{'s' if runs != 1 else ''} (`orchestrator task log`)",
        )
    return table


def schedule_table(task: TaskSchedule, *, title: str) -> Table:
    """A task's deadline and re-drives as a table."""
    table = Table(title=title)
    for column in ("id", "type", "status", "created", "deadline", "re-drives", "last re-drive"):
        table.add_column(column)
    when = "%Y-%m-%d %H:%M:%S"
    table.add_row(
        task.id,
        task.type.value,
        task.status.value,
        task.created_at.strftime(when),
        task.deadline_at.strftime(when),
        str(task.redrive_count),
        task.redriven_at.strftime(when) if task.redriven_at else "",
    )
    return table


@app.command("create")
def create(
    project_id: Annotated[str, typer.Argument(help="The project's id.")],
    task_type: Annotated[
        TaskType, typer.Option("--type", help="What to do.")
    ] = TaskType.ENGINEERING,
    spec: Annotated[str | None, typer.Option(help="What to build (engineering).")] = None,
    correlation_id: Annotated[
        str | None,
        typer.Option(
            envvar=CORRELATION_ID_ENV,
            help="Keep this correlation id on the task (a chat turn's; a PO worker's agent "
            f"has it in {CORRELATION_ID_ENV}). Default: a new one.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a task; engineering and deploy tasks start their flow."""
    body = TaskCreate(project_id=project_id, type=task_type, spec=spec)
    created = call_api(lambda api: api.create_task(body, correlation_id=correlation_id or None))
    if as_json:
        emit(created, Table(), as_json=True)
        return
    emit(
        created,
        task_table([created], title=f"Created (correlation {created.correlation_id})"),
        as_json=False,
    )


@app.command("list")
def list_tasks(
    status: Annotated[TaskStatus | None, typer.Option(help="Only this status.")] = None,
    project_id: Annotated[
        str | None, typer.Option("--project", help="Only this project's.")
    ] = None,
    task_type: Annotated[TaskType | None, typer.Option("--type", help="Only this type.")] = None,
    owner_id: Annotated[int | None, typer.Option(help="Only this owner's.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: JsonFlag = False,
) -> None:
    """List tasks, newest first."""
    page = call_api(
        lambda api: api.list_tasks(
            status=status,
            project_id=project_id,
            task_type=task_type,
            owner_id=owner_id,
            limit=limit,
            offset=offset,
        )
    )
    title = f"Tasks {offset + 1}-{offset + len(page.items)} of {page.total}"
    emit(page.items, task_table(page.items, title=title), as_json=as_json)


@app.command("show")
def show(task_id: str, as_json: JsonFlag = False) -> None:
    """Show one task."""
    task = call_api(lambda api: api.get_task(task_id))
    emit(task, task_table([task], title=f"Task {task.id}"), as_json=as_json)
    details = engineering_table(task.result) if task.result and not as_json else None
    if details is not None:
        Console(width=160).print(details)


CorrelationOption = Annotated[
    str | None,
    typer.Option(
        envvar=CORRELATION_ID_ENV,
        help="The correlation id of the request (a chat turn's; a PO worker's agent has it in "
        f"{CORRELATION_ID_ENV}). Default: the task's own.",
    ),
]


@app.command("cancel")
def cancel(
    task_id: str, correlation_id: CorrelationOption = None, as_json: JsonFlag = False
) -> None:
    """Cancel a queued or running task."""
    task = call_api(lambda api: api.cancel_task(task_id, correlation_id=correlation_id or None))
    emit(task, task_table([task], title="Cancelled"), as_json=as_json)


@app.command("schedule")
def schedule(task_id: str, as_json: JsonFlag = False) -> None:
    """Show a task's deadline and re-drives (admins)."""
    task = call_api(lambda api: api.get_task_schedule(task_id))
    emit(task, schedule_table(task, title=f"Task {task.id} (UTC)"), as_json=as_json)


@app.command("redrive")
def redrive(task_id: str, as_json: JsonFlag = False) -> None:
    """Publish a queued task's queue message again, e.g. after it was dead-lettered or lost
    with Redis (admins); its flow starts at most once."""
    task = call_api(lambda api: api.redrive_task(task_id))
    emit(task, schedule_table(task, title=f"Re-driven {task.id} (UTC)"), as_json=as_json)
