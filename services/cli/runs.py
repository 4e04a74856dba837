"""`orchestrator task log ID` (what the agent did and what it cost), `orchestrator usage`
(costs per task, project and user) and `orchestrator admin budget` (a user's monthly cap)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.cli.projects import JsonFlag, call_api, emit
from shared.api_client.schemas import AgentRunDTO, UsageReport, UserBudget

__all__ = ["budget", "log", "render_log", "usage"]

_ANSWER_LINES = 40


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"


def render_log(task_id: str, runs: Sequence[AgentRunDTO]) -> str:
    """A task's runs as readable text: per run the agent, each tool call, the answer, the
    tokens and the cost; the task's total at the end."""
    if not runs:
        return f"task {task_id}: no agent run recorded yet"
    lines: list[str] = []
    for number, run in enumerate(runs, 1):
        version = f" {run.agent_version}" if run.agent_version else ""
        model = f", model {run.model}" if run.model else ""
        when = run.created_at.strftime("%Y-%m-%d %H:%M:%S")
        lines.append(
            f"run {number} [{run.step}] {run.agent}{version}{model}: {run.status} "
            f"(exit {run.exit_code if run.exit_code is not None else '-'}, "
            f"{run.duration_ms / 1000:.1f} s, {when} UTC)"
        )
        lines.append(f"  prompt: {run.prompt_chars} characters")
        for tool in run.tools:
            target = f" {tool.target}" if tool.target else ""
            lines.append(f"  - {tool.name}{target} -> {tool.outcome}")
        if run.tools_dropped:
            lines.append(f"  ... and {run.tools_dropped} more tool calls")
        if run.error:
            lines.append(f"  error: {run.error}")
        if run.answer:
            answer = run.answer.splitlines()
            lines.append("  answer:")
            lines += [f"    {line}" for line in answer[:_ANSWER_LINES]]
            if len(answer) > _ANSWER_LINES:
                lines.append(f"    ... ({len(answer) - _ANSWER_LINES} more lines: --json)")
        lines.append(
            f"  tokens: {run.input_tokens} in, {run.output_tokens} out, "
            f"{run.cache_read_tokens} cache read, {run.cache_write_tokens} cache write; "
            f"cost {_usd(run.cost_usd)}"
        )
    total = sum(run.cost_usd for run in runs)
    lines.append(f"total: {len(runs)} run(s), {_usd(total)}")
    return "\n".join(lines)


def log(task_id: str, as_json: JsonFlag = False) -> None:
    """Show what the task's agent runs did (tool calls, answer) and what they cost."""
    runs = call_api(lambda api: api.list_runs(task_id))
    if as_json:
        emit(runs, Table(), as_json=True)
        return
    Console(width=160, highlight=False).print(escape(render_log(task_id, runs)))


def usage_table(report: UsageReport) -> Table:
    """A usage report as a table."""
    who = f"user {report.user_id}" if report.user_id is not None else "all users"
    if report.project_id is not None:
        who += f", project {report.project_id}"
    table = Table(title=f"Agent usage: {who}")
    for column in ("scope", "id", "runs", "tokens in", "tokens out", "cost"):
        table.add_column(column)
    table.add_row(
        "total",
        "",
        str(report.runs),
        str(report.input_tokens),
        str(report.output_tokens),
        _usd(report.cost_usd),
    )
    cap = f" of {_usd(report.monthly_cap_usd)} cap" if report.monthly_cap_usd is not None else ""
    table.add_row(
        "this month",
        report.month_start.strftime("%Y-%m"),
        "",
        "",
        "",
        _usd(report.month_cost_usd) + cap,
    )
    for scope, lines in (("project", report.by_project), ("task", report.by_task)):
        for line in lines:
            table.add_row(
                scope,
                line.id,
                str(line.runs),
                str(line.input_tokens),
                str(line.output_tokens),
                _usd(line.cost_usd),
            )
    return table


def usage(
    user_id: Annotated[
        int | None, typer.Option("--user", help="This user's (admins; default: yours).")
    ] = None,
    project_id: Annotated[
        str | None, typer.Option("--project", help="Only this project's.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """What agent runs cost: total, this month (against your cap), by project and task."""
    report = call_api(lambda api: api.usage(user_id=user_id, project_id=project_id))
    emit(report, usage_table(report), as_json=as_json)


def budget(
    user_id: Annotated[int, typer.Argument(help="The user's id.")],
    monthly_cap_usd: Annotated[
        float | None,
        typer.Argument(help="The cap in USD per calendar month; omit to clear it."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Set a user's own monthly cap on agent spend (admins); without a cap, clear it."""
    result: UserBudget = call_api(lambda api: api.set_budget(user_id, monthly_cap_usd))
    table = Table(title=f"User {result.user_id} budget", show_header=False)
    table.add_row("own cap", _usd(result.own_cap_usd))
    table.add_row("cap that applies", _usd(result.monthly_cap_usd))
    table.add_row("spent this month", _usd(result.month_cost_usd))
    emit(result, table, as_json=as_json)
