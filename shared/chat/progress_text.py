"""How a task's progress and result read in a chat: a text progress bar, the step, the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.contracts import ProgressEvent, TaskDTO, TaskStatus

__all__ = ["TaskView", "progress_bar"]

_BAR_CELLS = 10


def progress_bar(pct: int) -> str:
    """`[██████░░░░] 60%`."""
    pct = max(0, min(100, pct))
    filled = round(pct * _BAR_CELLS / 100)
    return f"[{'█' * filled}{'░' * (_BAR_CELLS - filled)}] {pct}%"


@dataclass
class TaskView:
    """What the chat shows of one task; `apply` each event, then `text()`."""

    task_id: str
    task_type: str
    project: str = ""
    pct: int = 0
    step: str = "queued"
    note: str = ""
    final: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """`🔧 engineering task 1a2b3c4d · shop`."""
        icon = "🚀" if self.task_type == "deploy" else "🔧"
        project = f" · {self.project}" if self.project else ""
        return f"{icon} {self.task_type} task {self.task_id[:8]}{project}"

    def apply(self, event: ProgressEvent) -> None:
        """Take one progress event into the view."""
        if event.progress_pct is not None:
            self.pct = max(self.pct, event.progress_pct)
        if event.current_step:
            self.step = event.current_step
        elif event.type == "started":
            self.step = "started"
        if event.message:
            self.note = event.message[:300]
        if event.type == "completed":
            self.pct = 100

    def text(self) -> str:
        """The message text while the task runs, or its final text."""
        if self.final:
            return f"{self.title}\n{self.final}"
        note = f"\n{self.note}" if self.note else ""
        return f"{self.title}\n{progress_bar(self.pct)}\nstep: {self.step}{note}"

    def finish(self, task: TaskDTO | None, event: ProgressEvent | None) -> None:
        """Set the final text from the task row (preferred) or the terminal event."""
        result: dict[str, Any] = dict(task.result or {}) if task is not None else {}
        failed = (task is not None and task.status == TaskStatus.FAILED) or (
            task is None and event is not None and event.type == "failed"
        )
        cancelled = task is not None and task.status == TaskStatus.CANCELLED
        if cancelled:
            self.final = "⏹ cancelled"
            return
        if failed:
            error = result.get("error") or (event.error if event else None) or "no detail"
            self.final = "\n".join([f"❌ failed: {error}", *_cost_lines(result)])
            return
        self.pct = 100
        lines = [f"✅ completed {progress_bar(100)}"]
        if result.get("commit_sha"):
            branch = f" on {result['branch']}" if result.get("branch") else ""
            lines.append(f"commit: {result['commit_sha']}{branch}")
        lines += _engineering_lines(result)
        if result.get("deployed_url"):
            sha = result.get("deployed_sha")
            pinned = f" (commit {str(sha)[:12]})" if sha else ""
            lines.append(f"URL: {result['deployed_url']}{pinned}")
        if len(lines) == 1 and event is not None and event.message:
            lines.append(event.message[:300])
        self.final = "\n".join(lines)


def _engineering_lines(result: dict[str, Any]) -> list[str]:
    """An engineering result in a few lines: the checks, the pull request, the agent's answer
    (its first lines)."""
    lines: list[str] = []
    checks = result.get("checks")
    if isinstance(checks, dict) and checks.get("rounds"):
        fixes = int(checks.get("fix_rounds") or 0)
        fixed = f" after {fixes} fix round{'s' if fixes != 1 else ''}" if fixes else ""
        lines.append(f"checks: passed{fixed}" if checks.get("passed") else "checks: failed")
    if result.get("pull_request_url"):
        lines.append(f"pull request: {result['pull_request_url']}")
    answer = str(result.get("agent_answer") or "").strip()
    if answer:
        first = [line for line in answer.splitlines() if line.strip()][:3]
        lines.append("agent: " + " / ".join(line.strip()[:160] for line in first))
    return lines + _cost_lines(result)


def _cost_lines(result: dict[str, Any]) -> list[str]:
    """What the task's agent runs cost (a failed task's too), when it ran any."""
    cost = result.get("agent_cost_usd")
    if not (isinstance(cost, int | float) and result.get("agent_runs")):
        return []
    runs = int(result["agent_runs"])
    return [
        f"agent cost: ${cost:.4f} ({runs} run{'s' if runs != 1 else ''}; "
        "`orchestrator task log` shows what it did)"
    ]
